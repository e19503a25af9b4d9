// voxgate's live transcription page (served at /, see docs/clients.md). Plain JavaScript, no
// framework and no build step. It reads what the server offers (/v1/offer), gets a short-lived
// token when the server needs one (from the operator's backend, `?token_url=`), and streams the
// microphone (through worklet.js) or a dropped recording to /v1/listen as 16 kHz LINEAR16 binary
// frames, showing interim text greyed and replacing it with finals.
//
// One `Session` per transcription session, over one or more connections: when a connection is
// lost (not ended by the server), or a draining server says `reconnect`, `Session.ended` resumes
// the session on a new one with the newest resume token (docs/protocol.md, "Resume") and re-sends
// the audio after the last final's end_ms, which it keeps (bounded) until a final covers it.
"use strict";

const RATE = 16000; // what the page sends: LINEAR16 at 16 kHz, mono
const FRAME_MS = 100; // audio per WebSocket frame
const BYTES_PER_MS = (RATE * 2) / 1000;
const MAX_RESUMES = 4; // connection attempts after a loss, 0.5 s, 1 s, 2 s, 4 s apart
const MAX_KEPT_MS = 120000; // audio kept for a resume, at most (the server's default window)

// What each server error code means, in words (docs/protocol.md, "Errors").
const ERROR_WORDS = {
  invalid_json: "The page sent a message the server could not read.",
  invalid_message: "The page sent a message the server did not understand.",
  invalid_base64: "The page sent audio the server could not decode.",
  audio_before_start: "Audio arrived before the session was set up.",
  frame_too_large: "An audio frame was too large for the server.",
  json_too_large: "A message was too large for the server.",
  unsupported_encoding: "The server does not accept this audio encoding.",
  unsupported_sample_rate: "The server does not accept this sample rate.",
  invalid_audio: "The audio is not in the format announced.",
  invalid_config: "The server refused these settings (model or language).",
  start_timeout: "The session was not set up in time.",
  idle_timeout: "No audio arrived for too long, so the server ended the session.",
  session_too_long: "The session reached the longest time this server allows.",
  buffer_full: "Audio arrived faster than the server could transcribe it.",
  too_many_messages: "Too many messages per second.",
  audio_too_fast: "Audio arrived far faster than real time.",
  slow_consumer: "This page did not read the server's messages fast enough.",
  too_many_sessions: "The server is full. Try again in a moment.",
  too_many_client_sessions: "Too many sessions are open from this address or key.",
  shutting_down: "The server is shutting down (a restart or maintenance). Try again in a moment.",
  upstream_rejected: "The speech recogniser refused the request.",
  upstream_unavailable: "The speech recogniser is unavailable. Try again later.",
  internal: "The server failed. Try again.",
  busy: "Every speech decoder of the server is busy. Try again in a moment.",
  resume_expired: "The connection was lost for too long to resume the session.",
  resume_forged: "The server did not accept this session's resume token.",
  resume_other_key: "The session belongs to another credential and cannot be resumed.",
  resume_malformed: "The page sent a resume token the server could not read.",
  resume_unavailable: "This server does not resume sessions.",
};

// Pipeline warnings (the session goes on).
const WARNING_WORDS = {
  shutting_down: "The server is shutting down: this session will end soon.",
  upstream_reconnecting: "Reconnecting to the speech recogniser; no audio is lost…",
  upstream_outage: "The speech recogniser is down: audio is kept and transcribed when it is back.",
  upstream_recovered: "The speech recogniser is back; catching up…",
  audio_after_stop: "Audio sent after the end of the session was dropped.",
};

const $ = (id) => document.getElementById(id);

/// What the page shows and keeps: the finals (for copy/download) and the current state.
const page = {
  offer: null,
  finals: [], // {text, start_ms, end_ms}
  session: null,
};

function setState(state, words) {
  document.body.dataset.state = state;
  if (words) $("status").textContent = words;
}

function showError(words) {
  $("error").textContent = words;
  $("error").hidden = false;
  setState("error");
}

function clearError() {
  $("error").textContent = "";
  $("error").hidden = true;
}

// ---- what the server offers ------------------------------------------------------------------

async function loadOffer() {
  try {
    const response = await fetch("/v1/offer", { cache: "no-cache" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    page.offer = await response.json();
  } catch (e) {
    showError(`Cannot read what this server offers (/v1/offer): ${e.message}.`);
    return;
  }
  const { engine, backend, models, languages } = page.offer;
  $("engine").textContent = `Engine: ${engine} (${backend}) · version ${page.offer.version}`;
  fill($("model"), models.map((m) => [m.id, m.label]));
  fill($("language"), languages.map((l) => [l, l]));
  for (const id of ["model", "language", "mic", "file"]) $(id).disabled = false;
  setState("idle", "Ready. Start the microphone or stream a recording.");
}

function fill(select, choices) {
  select.replaceChildren(
    ...choices.map(([value, label]) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      return option;
    }),
  );
}

// ---- credential: the "tiny backend step" -----------------------------------------------------

/// A session token when the server needs a credential: POSTed for at `?token_url=` (the
/// operator's backend, which holds the API key and calls voxgate's POST /v1/tokens). Without
/// keys on loopback the server needs none and this is null. Never a long-lived key.
async function sessionToken() {
  if (!page.offer.credential_required) return null;
  const tokenUrl = new URLSearchParams(location.search).get("token_url");
  if (!tokenUrl) {
    throw new Error(
      "This server needs a credential. Open this page with ?token_url=<your backend's token " +
        "URL> (see docs/clients.md).",
    );
  }
  const response = await fetch(tokenUrl, { method: "POST", credentials: "include" });
  if (!response.ok) throw new Error(`The token URL answered HTTP ${response.status}.`);
  const { token } = await response.json();
  if (typeof token !== "string") throw new Error("The token URL answered without a token.");
  return token;
}

// ---- one session, over one or more connections -----------------------------------------------

class Session {
  /// `source` stops the audio when the session ends.
  constructor(source) {
    this.source = source;
    this.ws = null;
    this.ready = false; // the current connection said `ready`
    this.opened = false; // some connection of this session opened
    this.kept = []; // [{at, pcm}]: audio from the last final on (`at`: its session ms), for resumes
    this.keptComplete = true; // nothing after the last final was dropped from `kept`
    this.producedMs = 0; // audio handed to the session so far
    this.sentMs = 0;
    this.sendTimes = []; // [sentMs after a frame, performance.now()], for the latency of finals
    this.resumeToken = null;
    this.finalMs = 0; // end of the last final received
    this.resumes = 0; // attempts since the last `ready`
    this.moving = false; // the server said `reconnect` (a drain by hand-off): resume at once
    this.stopping = false;
    this.errorShown = false;
    this.closedSummary = null;
    this.done = false;
  }

  async open() {
    await this.connect({
      type: "start",
      encoding: "LINEAR16",
      sample_rate_hz: RATE,
      language_code: $("language").value,
      model: $("model").value,
      interim_results: true,
    });
  }

  /// Opens a connection that sends `start` first (a configuring one, or a resuming one).
  async connect(start) {
    const token = await sessionToken();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/v1/listen`;
    // Browsers cannot set headers on a WebSocket: the token travels as a subprotocol.
    const ws = token ? new WebSocket(url, ["voxgate.v1", `bearer.${token}`]) : new WebSocket(url);
    this.ws = ws;
    this.ready = false;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.opened = true;
      ws.send(JSON.stringify(start));
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") this.received(JSON.parse(event.data));
    };
    ws.onclose = (event) => this.ended(event);
  }

  received(message) {
    if (typeof message.resume_token === "string") this.resumeToken = message.resume_token;
    switch (message.type) {
      case "ready":
        this.ready = true;
        this.resumes = 0;
        setState("streaming", this.source.describe());
        this.sendKept();
        if (this.stopping) this.ws.send(JSON.stringify({ type: "stop" }));
        break;
      case "transcript":
        if (message.is_final) this.final(message);
        else $("interim").textContent = message.transcript;
        break;
      case "warning":
        $("status").textContent = WARNING_WORDS[message.code] || message.message;
        break;
      case "error":
        this.errorShown = true;
        showError(`${ERROR_WORDS[message.code] || "The server ended the session."} (${message.code})`);
        break;
      case "reconnect":
        // The token came with it (kept above); the resume point is the last final's end.
        this.moving = true;
        setState("connecting", "The server is restarting: moving the session to another one…");
        break;
      case "closed":
        this.closedSummary =
          `Session ended: ${message.audio_seconds.toFixed(1)} s of audio, ` +
          `${message.results} final ${message.results === 1 ? "result" : "results"}.`;
        break;
    }
  }

  final(message) {
    $("interim").textContent = "";
    this.finalMs = Math.max(this.finalMs, message.end_ms);
    // Audio that ends before the final is never needed again.
    while (this.kept.length && this.kept[0].at + this.kept[0].pcm.byteLength / BYTES_PER_MS <= this.finalMs) {
      this.kept.shift();
    }
    if (this.kept.length === 0 || this.kept[0].at <= this.finalMs) this.keptComplete = true;
    if (!message.transcript) return;
    const entry = { text: message.transcript, start_ms: message.start_ms, end_ms: message.end_ms };
    page.finals.push(entry);
    const span = document.createElement("span");
    span.className = "final";
    span.textContent = `${entry.text} `;
    $("finals").append(span);
    // Latency: from the moment the final's last audio left the page to now.
    while (this.sendTimes.length > 1 && this.sendTimes[1][0] <= entry.end_ms) this.sendTimes.shift();
    const sent = this.sendTimes.find(([ms]) => ms >= entry.end_ms);
    if (sent) {
      const latency = Math.round(performance.now() - sent[1]);
      $("latency").textContent = `last final ${latency} ms after its audio`;
      $("latency").dataset.ms = String(latency);
    }
  }

  /// Takes one LINEAR16 frame: kept for a resume, sent now if the connection is ready (else
  /// when it is, from `kept`).
  send(pcm) {
    if (this.done) return;
    this.kept.push({ at: this.producedMs, pcm });
    this.producedMs += pcm.byteLength / BYTES_PER_MS;
    while (this.kept.length > 1 && this.producedMs - this.kept[0].at > MAX_KEPT_MS) {
      this.kept.shift();
      this.keptComplete = false;
    }
    if (this.ready && this.ws.readyState === WebSocket.OPEN) this.transmit(pcm);
  }

  /// After `ready`: the audio from the last final on (all of it, on a first connection).
  sendKept() {
    this.sentMs = Math.min(this.finalMs, this.producedMs); // what is sent again counts from here
    for (const { at, pcm } of this.kept) {
      const skip = Math.max(0, Math.round((this.finalMs - at) * BYTES_PER_MS));
      if (skip < pcm.byteLength) this.transmit(skip ? pcm.slice(skip) : pcm);
    }
  }

  transmit(pcm) {
    this.ws.send(pcm);
    this.sentMs += pcm.byteLength / BYTES_PER_MS;
    this.sendTimes.push([this.sentMs, performance.now()]);
    $("sent").textContent = this.source.progress(this.sentMs);
    $("sent").dataset.ms = String(Math.round(this.sentMs));
  }

  /// No more audio: the server delivers the last finals, then `closed`.
  stop() {
    this.source.stop();
    this.stopping = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.ready) {
      setState("stopping", "Finishing the last words…");
      this.ws.send(JSON.stringify({ type: "stop" }));
    } else if (this.ws && this.ws.readyState === WebSocket.CONNECTING && !this.resumeToken) {
      this.ws.close();
    }
  }

  /// Whether a lost connection can be resumed: a token came, the server did not end the session,
  /// and every bit of audio after the last final is still kept.
  canResume() {
    return (
      this.resumeToken && !this.closedSummary && !this.errorShown && this.keptComplete &&
      this.opened && this.resumes < MAX_RESUMES
    );
  }

  /// The connection ended, for whatever reason: resumed when it was lost, else the end.
  ended(event) {
    if (this.canResume()) {
      const delay = this.moving ? 0 : 500 * 2 ** this.resumes;
      this.moving = false;
      this.resumes += 1;
      this.ready = false;
      setState("connecting", "The connection was lost: resuming the session…");
      setTimeout(() => {
        this.connect({ type: "start", resume: { token: this.resumeToken, from_ms: this.finalMs } })
          .catch((e) => this.ended({ code: 1006, reason: e.message }));
      }, delay);
      return;
    }
    this.done = true;
    this.source.stop();
    $("interim").textContent = "";
    page.session = null;
    showIdleControls();
    if (this.closedSummary && event.code === 1000) {
      setState("closed", this.closedSummary);
    } else if (this.errorShown) {
      $("status").textContent = "Disconnected: the server ended the session.";
    } else if (!this.opened) {
      showError(
        "Could not connect to the server: it may be down, or it refused this page " +
          "(a missing or expired credential, or an origin it does not allow).",
      );
    } else if (event.code === 1006) {
      showError("The connection to the server was lost: the server stopped or the network failed.");
    } else {
      const reason = ERROR_WORDS[event.reason] || event.reason || "no reason given";
      showError(`The server closed the connection (${event.code}): ${reason}`);
    }
  }
}

// ---- audio sources ---------------------------------------------------------------------------

/// The microphone, through the worklet.
class Microphone {
  async start(session) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("The microphone needs a secure page: open it over https:// or on localhost.");
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
    } catch (e) {
      throw new Error(microphoneProblem(e));
    }
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule("/page/worklet.js");
    const input = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "linear16-downsampler", {
      numberOfOutputs: 0,
      processorOptions: { targetRate: RATE, frameMs: FRAME_MS },
    });
    this.node.port.onmessage = ({ data }) => {
      $("level").value = data.peak;
      session.send(data.pcm);
    };
    input.connect(this.node);
  }

  describe() {
    return "Listening… speak now. Press the button again (or Escape) to stop.";
  }

  progress(ms) {
    return `${(ms / 1000).toFixed(1)} s sent`;
  }

  stop() {
    if (this.node) this.node.port.onmessage = null;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.context && this.context.state !== "closed") this.context.close();
    $("level").value = 0;
  }
}

function microphoneProblem(e) {
  switch (e.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow it in the browser's site settings and try again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be opened (another program may be using it).";
    default:
      return `The microphone could not be started: ${e.message}`;
  }
}

/// A recording, decoded by the browser (WAV, MP3, Ogg, …), resampled to 16 kHz mono and sent
/// at real time.
class Recording {
  constructor(file) {
    this.file = file;
    this.timer = null;
  }

  async start(session) {
    let decoded;
    try {
      // decodeAudioData resamples to the context's rate: 16 kHz here.
      const context = new OfflineAudioContext(1, 1, RATE);
      decoded = await context.decodeAudioData(await this.file.arrayBuffer());
    } catch (e) {
      throw new Error(`${this.file.name}: not an audio file this browser can decode.`);
    }
    const pcm = toLinear16(decoded);
    this.totalMs = pcm.length / (RATE / 1000);
    const frame = (RATE * FRAME_MS) / 1000;
    let at = 0;
    const started = performance.now();
    // Real time: each tick sends what the clock says is due, so a late timer catches up.
    const tick = () => {
      const due = ((performance.now() - started + FRAME_MS) * RATE) / 1000;
      while (at < pcm.length && at < due) {
        session.send(pcm.slice(at, at + frame).buffer);
        at += frame;
      }
      const peak = pcm.slice(Math.max(0, at - frame), at).reduce((m, s) => Math.max(m, Math.abs(s)), 0);
      $("level").value = peak / 0x8000;
      if (at >= pcm.length) {
        this.stop();
        session.stop();
      }
    };
    this.timer = setInterval(tick, FRAME_MS);
  }

  describe() {
    return `Streaming ${this.file.name} at real time…`;
  }

  progress(ms) {
    return `${(ms / 1000).toFixed(1)} of ${(this.totalMs / 1000).toFixed(1)} s sent`;
  }

  stop() {
    clearInterval(this.timer);
    $("level").value = 0;
  }
}

function toLinear16(buffer) {
  const out = new Int16Array(buffer.length);
  for (let i = 0; i < buffer.length; i++) {
    let sum = 0;
    for (let c = 0; c < buffer.numberOfChannels; c++) sum += buffer.getChannelData(c)[i];
    const s = Math.max(-1, Math.min(1, sum / buffer.numberOfChannels));
    out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
  }
  return out;
}

// ---- controls --------------------------------------------------------------------------------

async function startSession(source) {
  clearError();
  setState("connecting", "Connecting…");
  const session = new Session(source);
  page.session = session;
  showBusyControls(source);
  try {
    await source.start(session); // the microphone is asked for before anything is connected
    await session.open();
  } catch (e) {
    source.stop();
    page.session = null;
    showIdleControls();
    $("status").textContent = "Not connected.";
    showError(e.message);
  }
}

function showBusyControls(source) {
  const mic = source instanceof Microphone;
  $("mic").textContent = mic ? "Stop microphone" : "Stop streaming";
  $("mic").setAttribute("aria-pressed", "true");
  for (const id of ["file", "model", "language"]) $(id).disabled = true;
}

function showIdleControls() {
  $("mic").textContent = "Start microphone";
  $("mic").setAttribute("aria-pressed", "false");
  for (const id of ["file", "model", "language"]) $(id).disabled = false;
}

function transcriptText() {
  return page.finals.map((f) => f.text).join(" ");
}

function vttTime(ms) {
  const pad = (n, w) => String(Math.floor(n)).padStart(w, "0");
  return `${pad(ms / 3600000, 2)}:${pad((ms / 60000) % 60, 2)}:${pad((ms / 1000) % 60, 2)}.${pad(ms % 1000, 3)}`;
}

function transcriptVtt() {
  const cues = page.finals.map(
    (f, i) => `${i + 1}\n${vttTime(f.start_ms)} --> ${vttTime(f.end_ms)}\n${f.text}\n`,
  );
  return `WEBVTT\n\n${cues.join("\n")}`;
}

function download(name, type, text) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  URL.revokeObjectURL(link.href);
}

function streamFile(file) {
  if (file && !page.session && page.offer) startSession(new Recording(file));
}

function wire() {
  $("mic").addEventListener("click", () => {
    if (page.session) page.session.stop();
    else startSession(new Microphone());
  });
  $("file").addEventListener("change", (e) => streamFile(e.target.files[0]));
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    streamFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && page.session) page.session.stop();
  });
  $("copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(transcriptText());
      $("status").textContent = "Transcript copied.";
    } catch (e) {
      $("status").textContent = "The browser did not allow copying; select the text instead.";
    }
  });
  $("download-txt").addEventListener("click", () =>
    download("transcript.txt", "text/plain", `${transcriptText()}\n`),
  );
  $("download-vtt").addEventListener("click", () =>
    download("transcript.vtt", "text/vtt", transcriptVtt()),
  );
  $("clear").addEventListener("click", () => {
    page.finals = [];
    $("finals").replaceChildren();
    $("interim").textContent = "";
  });
}

wire();
setState("loading");
loadOffer();
