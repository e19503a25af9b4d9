//! The thin binding to PocketSphinx: the library is opened at run time (`dlopen`), its functions
//! looked up by name, and one decoder is wrapped in [`Decoder`], whose methods are safe.
//!
//! Why our own binding rather than the `pocketsphinx` crate: that crate declares the 0.8 API
//! (`ps_start_utt(ps, uttid)`, `ps_get_hyp(ps, &score, &uttid)`, `ps_seg_iter(ps, &score)`), while
//! Debian ships 5prealpha, where those functions take fewer arguments; it also panics (`assert!`,
//! `unwrap`) when a model fails to load. And loading at run time means the gateway builds without
//! PocketSphinx, runs without it for Google users, and — when the local engine is asked for but the
//! library is missing — says at start-up which Debian package to install, instead of the dynamic
//! linker refusing to start the binary.
//!
//! The declarations follow Debian's 5prealpha headers (`/usr/include/pocketsphinx/pocketsphinx.h`,
//! `/usr/include/<triplet>/sphinxbase/{cmd_ln,cmn,feat,err,logmath}.h`), soname `.so.3`.
//!
//! PocketSphinx logs through a global callback; `install_log_sink` routes it into `tracing`
//! (target `pocketsphinx`: its errors and warnings as such, its chatter at `debug`). On a few fatal
//! errors (a corrupt model file) the library calls `exit()` itself; its message is logged first.
//! Model files are checked before loading (`engine::check_model`), so a missing one is an ordinary
//! start-up error.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

/// The shared objects, and the Debian package that ships each one.
const LIBRARIES: [(&str, &str); 2] = [
    ("libsphinxbase.so.3", "libsphinxbase3"),
    ("libpocketsphinx.so.3", "libpocketsphinx3"),
];

/// Samples per 10 ms frame at 16 kHz: PocketSphinx's frame shift with `-frate 100`.
pub const SAMPLES_PER_FRAME: u64 = 160;

/// sphinxbase's `err_cb_f`.
type LogCallback = unsafe extern "C" fn(*mut c_void, c_int, *const c_char, ...);

extern "C" {
    /// The C shim (`log_shim.c`): formats a message and passes it to the sink in `user_data`.
    fn voxgate_pocketsphinx_log(user_data: *mut c_void, level: c_int, format: *const c_char, ...);
}

/// The start of sphinxbase's `feat_t` (`feat.h`), up to the CMN state this binding resets. The
/// fields mirror the C declaration one for one; only `cmn_struct` (and a few for a sanity check)
/// are read.
#[repr(C)]
struct FeatHead {
    refcount: c_int,
    name: *mut c_char,
    cepsize: i32,
    n_stream: i32,
    stream_len: *mut u32,
    window_size: i32,
    n_sv: i32,
    sv_len: *mut u32,
    subvecs: *mut *mut i32,
    sv_buf: *mut f32,
    sv_dim: i32,
    cmn: c_int,
    varnorm: i32,
    agc: c_int,
    compute_feat: *const c_void,
    cmn_struct: *mut c_void,
}

/// The functions used, resolved once; each field is the C function of the same name.
struct Api {
    cmd_ln_parse_r: unsafe extern "C" fn(
        *mut c_void,
        *const c_void,
        i32,
        *const *const c_char,
        i32,
    ) -> *mut c_void,
    cmd_ln_free_r: unsafe extern "C" fn(*mut c_void) -> c_int,
    ps_args: unsafe extern "C" fn() -> *const c_void,
    ps_init: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    ps_free: unsafe extern "C" fn(*mut c_void) -> c_int,
    ps_start_stream: unsafe extern "C" fn(*mut c_void) -> c_int,
    ps_start_utt: unsafe extern "C" fn(*mut c_void) -> c_int,
    ps_process_raw: unsafe extern "C" fn(*mut c_void, *const i16, usize, c_int, c_int) -> c_int,
    ps_end_utt: unsafe extern "C" fn(*mut c_void) -> c_int,
    ps_get_hyp: unsafe extern "C" fn(*mut c_void, *mut i32) -> *const c_char,
    ps_get_in_speech: unsafe extern "C" fn(*mut c_void) -> u8,
    ps_seg_iter: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    ps_seg_next: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    ps_seg_word: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    ps_seg_frames: unsafe extern "C" fn(*mut c_void, *mut c_int, *mut c_int),
    ps_seg_prob: unsafe extern "C" fn(*mut c_void, *mut i32, *mut i32, *mut i32) -> i32,
    ps_get_logmath: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    ps_get_feat: unsafe extern "C" fn(*mut c_void) -> *mut FeatHead,
    logmath_exp: unsafe extern "C" fn(*mut c_void, c_int) -> f64,
    cmn_live_get: unsafe extern "C" fn(*mut c_void, *mut f32),
    cmn_live_set: unsafe extern "C" fn(*mut c_void, *const f32),
    err_set_callback: unsafe extern "C" fn(Option<LogCallback>, *mut c_void),
    err_set_logfp: unsafe extern "C" fn(*mut libc::FILE),
}

// The table holds only function pointers into libraries that stay loaded for the whole process.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

/// The libraries opened and resolved (or why not), once per process.
static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// `ps_init` touches process-wide state (the log file, the random seed): one at a time.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// The last `dlerror()` message.
fn dl_error() -> String {
    // SAFETY: dlerror returns a thread-local, NUL-terminated string or null.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Opens one shared object; the error names the Debian `package` that ships it.
fn open_library(name: &str, package: &str) -> Result<*mut c_void, String> {
    let c_name = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: a valid C string; the handle is never closed (the library stays loaded).
    let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!(
            "the local speech engine needs PocketSphinx: cannot load {name} ({}); install the \
             Debian package {package} (apt-get install libpocketsphinx3 libsphinxbase3 \
             pocketsphinx-en-us), or choose another [recognizer] backend",
            dl_error()
        ));
    }
    Ok(handle)
}

fn open_libraries() -> Result<Vec<*mut c_void>, String> {
    LIBRARIES
        .iter()
        .map(|(name, package)| open_library(name, package))
        .collect()
}

/// Looks `name` up in any of `handles` as a function of type `F`.
///
/// # Safety
/// `F` must be the function-pointer type of the C declaration of `name`.
unsafe fn symbol<F: Copy>(handles: &[*mut c_void], name: &str) -> Result<F, String> {
    let c_name = CString::new(name).map_err(|e| e.to_string())?;
    for handle in handles {
        // SAFETY: a live handle and a valid C string.
        let address = unsafe { libc::dlsym(*handle, c_name.as_ptr()) };
        if !address.is_null() {
            // SAFETY: the caller guarantees `F` is this symbol's function-pointer type, which has
            // the size of a data pointer on every platform dlopen exists on.
            return Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) });
        }
    }
    Err(format!(
        "PocketSphinx has no function {name}: this engine needs PocketSphinx 5prealpha \
         (Debian's libpocketsphinx3)"
    ))
}

fn load() -> Result<Api, String> {
    let h = open_libraries()?;
    // SAFETY: every type below is the C declaration of the symbol it is looked up for.
    unsafe {
        Ok(Api {
            cmd_ln_parse_r: symbol(&h, "cmd_ln_parse_r")?,
            cmd_ln_free_r: symbol(&h, "cmd_ln_free_r")?,
            ps_args: symbol(&h, "ps_args")?,
            ps_init: symbol(&h, "ps_init")?,
            ps_free: symbol(&h, "ps_free")?,
            ps_start_stream: symbol(&h, "ps_start_stream")?,
            ps_start_utt: symbol(&h, "ps_start_utt")?,
            ps_process_raw: symbol(&h, "ps_process_raw")?,
            ps_end_utt: symbol(&h, "ps_end_utt")?,
            ps_get_hyp: symbol(&h, "ps_get_hyp")?,
            ps_get_in_speech: symbol(&h, "ps_get_in_speech")?,
            ps_seg_iter: symbol(&h, "ps_seg_iter")?,
            ps_seg_next: symbol(&h, "ps_seg_next")?,
            ps_seg_word: symbol(&h, "ps_seg_word")?,
            ps_seg_frames: symbol(&h, "ps_seg_frames")?,
            ps_seg_prob: symbol(&h, "ps_seg_prob")?,
            ps_get_logmath: symbol(&h, "ps_get_logmath")?,
            ps_get_feat: symbol(&h, "ps_get_feat")?,
            logmath_exp: symbol(&h, "logmath_exp")?,
            cmn_live_get: symbol(&h, "cmn_live_get")?,
            cmn_live_set: symbol(&h, "cmn_live_set")?,
            err_set_callback: symbol(&h, "err_set_callback")?,
            err_set_logfp: symbol(&h, "err_set_logfp")?,
        })
    }
}

/// The API, loading the libraries on first use; the error names the package to install.
fn api() -> Result<&'static Api, String> {
    API.get_or_init(|| {
        let api = load()?;
        install_log_sink(&api);
        Ok(api)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Whether PocketSphinx can be loaded on this machine (the error says what to install).
pub fn check_library() -> Result<(), String> {
    api().map(|_| ())
}

/// sphinxbase's `err_lvl_t`.
const ERR_INFO: c_int = 1;
const ERR_INFOCONT: c_int = 2;
const ERR_WARN: c_int = 3;
const ERR_ERROR: c_int = 4;
const ERR_FATAL: c_int = 5;

/// Receives every PocketSphinx log message (from the C shim), on the thread that logged it.
extern "C" fn log_sink(level: c_int, message: *const c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: the shim passes a NUL-terminated buffer that lives for this call.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    let text = text.trim_end();
    if text.is_empty() {
        return;
    }
    match level {
        ERR_FATAL | ERR_ERROR => tracing::error!(target: "pocketsphinx", "{text}"),
        ERR_WARN => tracing::warn!(target: "pocketsphinx", "{text}"),
        ERR_INFO | ERR_INFOCONT => tracing::debug!(target: "pocketsphinx", "{text}"),
        _ => tracing::trace!(target: "pocketsphinx", "{text}"),
    }
}

fn install_log_sink(api: &Api) {
    let sink: extern "C" fn(c_int, *const c_char) = log_sink;
    // SAFETY: the shim matches `err_cb_f` and casts the user data back to `sink`'s type. With no
    // log file, sphinxbase also skips the configuration dump it writes to that file directly.
    unsafe {
        (api.err_set_logfp)(std::ptr::null_mut());
        (api.err_set_callback)(
            Some(voxgate_pocketsphinx_log as LogCallback),
            sink as *mut c_void,
        );
    }
}

/// A failed call into the decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PocketSphinx {call} failed ({code})")]
pub struct DecodeError {
    /// The C function that failed.
    pub call: &'static str,
    /// What it returned.
    pub code: i32,
}

/// One word of a hypothesis as the segment iterator gives it, on the stream's frame clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// As in the dictionary: fillers (`<s>`, `<sil>`, `[NOISE]`) and alternates (`read(2)`) kept.
    pub word: String,
    /// First 10 ms frame of the word, counted from the start of the stream (`ps_start_stream`).
    pub start_frame: u64,
    /// Last frame of the word (inclusive).
    pub end_frame: u64,
    /// Posterior probability of the word (0–1).
    pub probability: f64,
}

/// One loaded PocketSphinx decoder (acoustic model, dictionary, language model). Loading takes
/// about a second and tens of MB, so decoders live as long as their worker and serve stream after
/// stream.
pub struct Decoder {
    /// The library's functions.
    api: &'static Api,
    /// The `ps_decoder_t`, owned (freed on drop).
    raw: NonNull<c_void>,
    /// `cmn_t` of the feature computation: reset at every stream start.
    cmn: NonNull<c_void>,
    /// The cepstral mean right after loading (the model's `-cmninit`).
    initial_cmn: Vec<f32>,
    /// Whether an utterance is started and not yet ended.
    in_utterance: bool,
}

// SAFETY: a decoder has no thread affinity; `Decoder` is used by one thread at a time (`&mut`).
unsafe impl Send for Decoder {}

impl Decoder {
    /// Loads a decoder configured by `args` (PocketSphinx command-line pairs such as
    /// `("-hmm", dir)`). The error is the library's or the model's, with what was asked for.
    pub fn new(args: &[(&str, String)]) -> Result<Decoder, String> {
        let api = api()?;
        let mut owned = Vec::with_capacity(args.len() * 2);
        for (name, value) in args {
            owned.push(CString::new(*name).map_err(|_| format!("invalid argument {name:?}"))?);
            owned.push(
                CString::new(value.as_str())
                    .map_err(|_| format!("{name}: {value:?} contains a NUL byte"))?,
            );
        }
        let argv: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        let argc = i32::try_from(argv.len()).map_err(|_| "too many arguments".to_string())?;
        let _serial = INIT_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: `argv` points at `argc` valid C strings that outlive the call (the library
        // copies what it keeps); `ps_args` is the library's own argument table.
        let config = unsafe {
            (api.cmd_ln_parse_r)(
                std::ptr::null_mut(),
                (api.ps_args)(),
                argc,
                argv.as_ptr(),
                1,
            )
        };
        if config.is_null() {
            return Err(
                "PocketSphinx rejected its configuration (see the pocketsphinx log)".into(),
            );
        }
        // SAFETY: a valid configuration; ps_init retains it, so our reference is released after.
        let raw = unsafe {
            let raw = (api.ps_init)(config);
            (api.cmd_ln_free_r)(config);
            raw
        };
        let Some(raw) = NonNull::new(raw) else {
            return Err("PocketSphinx could not load the model (see the pocketsphinx log)".into());
        };
        let mut decoder = Decoder {
            api,
            raw,
            cmn: NonNull::dangling(),
            initial_cmn: Vec::new(),
            in_utterance: false,
        };
        decoder.find_cmn()?;
        Ok(decoder)
    }

    /// Finds the CMN state inside the feature computation and remembers its initial value, after
    /// checking that the structure looks as `feat.h` declares it.
    fn find_cmn(&mut self) -> Result<(), String> {
        // SAFETY: a live decoder; `feat_t` begins as `FeatHead` declares (checked below before the
        // pointer is used).
        let feat = unsafe { (self.api.ps_get_feat)(self.raw.as_ptr()) };
        let Some(feat) = NonNull::new(feat) else {
            return Err("PocketSphinx decoder has no feature computation".into());
        };
        // SAFETY: `feat` points at a live `feat_t`; only its leading fields are read.
        let head = unsafe { feat.as_ref() };
        let plausible = head.refcount >= 1
            && (1..=64).contains(&head.cepsize)
            && (1..=8).contains(&head.n_stream)
            && (0..=2).contains(&head.cmn);
        let cmn = NonNull::new(head.cmn_struct).filter(|_| plausible);
        let Some(cmn) = cmn else {
            return Err(
                "unexpected PocketSphinx feature layout: this engine needs PocketSphinx 5prealpha"
                    .into(),
            );
        };
        let mut initial = vec![0.0f32; head.cepsize as usize];
        // SAFETY: `cmn` is the live `cmn_t` whose vectors have `cepsize` elements.
        unsafe { (self.api.cmn_live_get)(cmn.as_ptr(), initial.as_mut_ptr()) };
        self.cmn = cmn;
        self.initial_cmn = initial;
        Ok(())
    }

    /// The cepstral mean a stream starts from (the model's `-cmninit`).
    pub fn initial_cmn(&self) -> &[f32] {
        &self.initial_cmn
    }

    fn check(call: &'static str, code: c_int) -> Result<(), DecodeError> {
        if code < 0 {
            Err(DecodeError { call, code })
        } else {
            Ok(())
        }
    }

    /// Starts a new stream: times count from here again, the noise estimate and the cepstral mean
    /// are reset (so a stream's results never depend on the streams decoded before it), and the
    /// first utterance starts.
    pub fn start_stream(&mut self) -> Result<(), DecodeError> {
        if self.in_utterance {
            self.end_utterance()?;
        }
        // SAFETY: a live decoder; `initial_cmn` has the length of the CMN vectors.
        unsafe {
            Self::check(
                "ps_start_stream",
                (self.api.ps_start_stream)(self.raw.as_ptr()),
            )?;
            (self.api.cmn_live_set)(self.cmn.as_ptr(), self.initial_cmn.as_ptr());
        }
        self.start_utterance()
    }

    pub fn start_utterance(&mut self) -> Result<(), DecodeError> {
        // SAFETY: a live decoder.
        Self::check("ps_start_utt", unsafe {
            (self.api.ps_start_utt)(self.raw.as_ptr())
        })?;
        self.in_utterance = true;
        Ok(())
    }

    /// Ends the utterance: the search finishes and the hypothesis and segments become final.
    pub fn end_utterance(&mut self) -> Result<(), DecodeError> {
        self.in_utterance = false;
        // SAFETY: a live decoder.
        Self::check("ps_end_utt", unsafe {
            (self.api.ps_end_utt)(self.raw.as_ptr())
        })
    }

    /// Feeds 16 kHz samples to the started utterance. `full_utterance`: these samples are the
    /// whole utterance (batch decoding, cepstral mean of the utterance itself).
    pub fn process(&mut self, samples: &[i16], full_utterance: bool) -> Result<(), DecodeError> {
        if !self.in_utterance {
            return Err(DecodeError {
                call: "ps_process_raw (no utterance started)",
                code: -1,
            });
        }
        // SAFETY: a live decoder and `samples.len()` readable samples.
        let code = unsafe {
            (self.api.ps_process_raw)(
                self.raw.as_ptr(),
                samples.as_ptr(),
                samples.len(),
                0,
                c_int::from(full_utterance),
            )
        };
        Self::check("ps_process_raw", code)
    }

    /// Whether the voice activity detector is in speech after the samples fed so far.
    pub fn in_speech(&self) -> bool {
        // SAFETY: a live decoder.
        unsafe { (self.api.ps_get_in_speech)(self.raw.as_ptr()) != 0 }
    }

    /// The best hypothesis so far (partial during an utterance), fillers excluded; empty if none.
    pub fn hypothesis(&mut self) -> String {
        let mut score = 0i32;
        // SAFETY: a live decoder; the string is owned by the decoder and copied at once.
        unsafe {
            let hyp = (self.api.ps_get_hyp)(self.raw.as_ptr(), &mut score);
            if hyp.is_null() {
                String::new()
            } else {
                CStr::from_ptr(hyp).to_string_lossy().trim().to_string()
            }
        }
    }

    /// The words of the best hypothesis with their frames and posteriors.
    pub fn segments(&mut self) -> Vec<Segment> {
        let mut segments = Vec::new();
        // SAFETY: a live decoder; the iterator is advanced until it returns null (which frees
        // it), each string copied before the next step.
        unsafe {
            let logmath = (self.api.ps_get_logmath)(self.raw.as_ptr());
            let mut seg = (self.api.ps_seg_iter)(self.raw.as_ptr());
            while !seg.is_null() {
                let word = (self.api.ps_seg_word)(seg);
                let (mut start, mut end) = (0 as c_int, 0 as c_int);
                (self.api.ps_seg_frames)(seg, &mut start, &mut end);
                let (mut ascr, mut lscr, mut lback) = (0i32, 0i32, 0i32);
                let log_prob = (self.api.ps_seg_prob)(seg, &mut ascr, &mut lscr, &mut lback);
                let probability = if logmath.is_null() {
                    0.0
                } else {
                    (self.api.logmath_exp)(logmath, log_prob).clamp(0.0, 1.0)
                };
                if !word.is_null() {
                    segments.push(Segment {
                        word: CStr::from_ptr(word).to_string_lossy().into_owned(),
                        start_frame: u64::try_from(start).unwrap_or(0),
                        end_frame: u64::try_from(end).unwrap_or(0),
                        probability,
                    });
                }
                seg = (self.api.ps_seg_next)(seg);
            }
        }
        segments
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the decoder is live and dropped once; an open utterance is freed with it.
        unsafe {
            (self.api.ps_free)(self.raw.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing library is a start-up error naming the package to install.
    #[test]
    fn missing_library_names_the_package() {
        let error = open_library("libvoxgate-missing.so.3", "libvoxgate-missing3")
            .err()
            .unwrap_or_default();
        assert!(error.contains("libvoxgate-missing.so.3"), "{error}");
        assert!(
            error.contains("install the Debian package libvoxgate-missing3"),
            "{error}"
        );
    }

    /// Debian's PocketSphinx loads, with every function this binding uses.
    #[test]
    fn the_installed_library_has_every_function() {
        assert_eq!(check_library(), Ok(()));
    }
}
