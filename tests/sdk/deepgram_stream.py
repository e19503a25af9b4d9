"""Deepgram's official Python SDK (deepgram-sdk, unchanged) against voxgate's Deepgram dialect.

Run by tests/dialect_deepgram.rs with the pinned SDK of tests/sdk/requirements.txt. Prints one JSON
line per event, for the Rust test to check:
  {"message": {...}}             every message the SDK parsed, as the SDK's model dumps it
  {"sent_finalize_at_ms": N}     when Finalize was sent (audio ms before it)
  {"end": "clean"}               the SDK's iteration ended without error (close 1000/1001)
  {"end": "error", "detail": s}  it ended with an exception
  {"refused": status, "dg_error": s}  connect() raised: the SDK's ApiError, or the handshake
                                 error it lets through (websockets' InvalidStatus)

Usage: deepgram_stream.py WS_BASE KEY AUDIO_FILE SAMPLE_RATE [QUERY_OVERRIDES_JSON]
  WS_BASE is the SDK's base, e.g. ws://127.0.0.1:PORT/deepgram; AUDIO_FILE is raw LINEAR16 mono.
"""

import json
import sys
import threading
import time

from deepgram import DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from websockets.exceptions import InvalidStatus

CHUNK_MS = 100


def emit(event):
    print(json.dumps(event), flush=True)


def main():
    ws_base, key, audio_path, rate = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    overrides = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    http_base = ws_base.replace("ws://", "http://", 1)
    environment = DeepgramClientEnvironment(
        base=http_base, production=ws_base, agent=ws_base, agent_rest=http_base
    )
    client = DeepgramClient(api_key=key, environment=environment)
    with open(audio_path, "rb") as f:
        audio = f.read()
    options = dict(
        model="nova-3",
        encoding="linear16",
        sample_rate=rate,
        channels=1,
        interim_results=True,
        punctuate=True,
        vad_events=True,
        utterance_end_ms=1000,
    )
    options.update(overrides)
    try:
        with client.listen.v1.connect(**options) as connection:
            stream(connection, audio, rate)
    except ApiError as e:
        emit({"refused": e.status_code, "dg_error": str((e.headers or {}).get("dg-error", ""))})
    except InvalidStatus as e:
        emit({"refused": e.response.status_code, "dg_error": e.response.headers.get("dg-error", "")})


def stream(connection, audio, rate):
    done = threading.Event()

    def read():
        try:
            for message in connection:
                if isinstance(message, bytes):
                    continue
                if isinstance(message, dict):
                    emit({"message": message})
                else:
                    emit({"message": message.model_dump(mode="json")})
            emit({"end": "clean"})
        except Exception as e:  # the test reports whatever ended the stream
            emit({"end": "error", "detail": repr(e)})
        finally:
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    chunk = rate * 2 * CHUNK_MS // 1000
    chunks = [audio[i : i + chunk] for i in range(0, len(audio), chunk)]
    half = len(chunks) // 2
    for i, piece in enumerate(chunks):
        if i == half:
            connection.send_finalize()
            emit({"sent_finalize_at_ms": i * CHUNK_MS})
        connection.send_media(piece)
        time.sleep(CHUNK_MS / 1000)
    connection.send_keep_alive()
    connection.send_close_stream()
    done.wait(60)


if __name__ == "__main__":
    main()
