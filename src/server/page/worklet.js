// The page's audio worklet: turns the microphone's float samples (at the AudioContext's rate,
// often 48 kHz) into 16 kHz LINEAR16 (little-endian 16-bit PCM), posted to the page in 100 ms
// frames with the frame's peak level. It runs on the audio thread, so it only converts; the page
// does the networking.
//
// Downsampling averages the input samples that fall into each output sample (a box filter):
// cheap, no aliasing worth speaking of for speech, and exact for any ratio (44.1 kHz too).

class Linear16Downsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frameMs } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample (≥ 1)
    this.frameLength = Math.round((targetRate * frameMs) / 1000);
    this.frame = new Int16Array(this.frameLength);
    this.filled = 0;
    this.sum = 0;
    this.count = 0;
    this.position = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const length = channels[0].length;
    for (let i = 0; i < length; i++) {
      let sample = 0;
      for (const channel of channels) sample += channel[i];
      sample /= channels.length; // mono: the mean of the channels
      this.sum += sample;
      this.count += 1;
      this.position += 1;
      if (this.position >= this.step) {
        this.position -= this.step;
        this.emit(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }

  emit(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.peak = Math.max(this.peak, Math.abs(clipped));
    this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    if (this.filled === this.frameLength) {
      // Int16Array is little-endian on every platform a browser runs on. The buffer is handed
      // over (not copied), which detaches `this.frame`: a new one follows.
      const pcm = this.frame.buffer;
      this.port.postMessage({ pcm, peak: this.peak }, [pcm]);
      this.frame = new Int16Array(this.frameLength);
      this.filled = 0;
      this.peak = 0;
    }
  }
}

registerProcessor("linear16-downsampler", Linear16Downsampler);
