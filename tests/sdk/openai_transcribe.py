"""OpenAI's official Python SDK (openai, unchanged) against voxgate's OpenAI Realtime dialect.

Run by tests/dialect_openai.rs with the pinned SDK of tests/sdk/requirements.txt. Prints one JSON
line per event, for the Rust test to check:
  {"event": {...}}               every server event the SDK parsed (model dump)
  {"end": "clean"}               the SDK's iteration ended without error after our close
  {"end": "error", "detail": s}  it ended with an exception
  {"refused": s}                 connecting raised (bad key)

Usage: openai_transcribe.py MODE BASE_URL KEY [AUDIO_FILE FORMAT TURNS]
  MODE stream: session.update (FORMAT: pcm16 | g711_ulaw), stream AUDIO_FILE in real time as
    input_audio_buffer.append, commit, wait for TURNS completed transcripts, close.
  MODE badparam: session.update with a format this API does not have; wait for the error event.
  BASE_URL is the SDK's base_url, e.g. http://127.0.0.1:PORT/openai/v1.
"""

import base64
import json
import sys
import threading
import time

from openai import OpenAI

CHUNK_MS = 100
FORMATS = {
    "pcm16": ({"type": "audio/pcm", "rate": 24000}, 48),
    "g711_ulaw": ({"type": "audio/pcmu"}, 8),
}


def emit(event):
    print(json.dumps(event), flush=True)


def dump(event):
    return event if isinstance(event, dict) else event.model_dump(mode="json")


def main():
    mode, base_url, key = sys.argv[1], sys.argv[2], sys.argv[3]
    client = OpenAI(api_key=key, base_url=base_url)
    try:
        manager = client.realtime.connect(extra_query={"intent": "transcription"})
        connection = manager.__enter__()
    except Exception as e:  # the test checks what the SDK raised
        emit({"refused": f"{type(e).__name__}: {e}"})
        return
    try:
        if mode == "stream":
            audio_path, fmt, turns = sys.argv[4], sys.argv[5], int(sys.argv[6])
            with open(audio_path, "rb") as f:
                stream(connection, f.read(), fmt, turns)
        else:
            bad_parameter(connection)
    finally:
        manager.__exit__(None, None, None)


def update(connection, fmt):
    connection.session.update(
        session={
            "type": "transcription",
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "turn_detection": {"type": "server_vad"},
                }
            },
        }
    )


def stream(connection, audio, fmt, turns):
    completed = threading.Semaphore(0)
    done = threading.Event()

    def read():
        try:
            for event in connection:
                event = dump(event)
                emit({"event": event})
                if event.get("type") == "conversation.item.input_audio_transcription.completed":
                    completed.release()
            emit({"end": "clean"})
        except Exception as e:  # reported to the test
            emit({"end": "error", "detail": repr(e)})
        finally:
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    session_format, bytes_per_ms = FORMATS[fmt]
    update(connection, session_format)
    chunk = bytes_per_ms * CHUNK_MS
    for i in range(0, len(audio), chunk):
        connection.input_audio_buffer.append(audio=base64.b64encode(audio[i : i + chunk]).decode())
        time.sleep(CHUNK_MS / 1000)
    connection.input_audio_buffer.commit()
    for _ in range(turns):
        if not completed.acquire(timeout=30):
            break
    connection.close()
    done.wait(10)


def bad_parameter(connection):
    update(connection, {"type": "audio/pcm", "rate": 16000})
    for event in connection:
        event = dump(event)
        emit({"event": event})
        if event.get("type") == "error":
            break
    connection.close()
    emit({"end": "clean"})


if __name__ == "__main__":
    main()
