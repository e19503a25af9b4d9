//! ONNX Runtime, loaded once per process from the shared library the setup script installed.
//!
//! `ort` (feature `load-dynamic`) binds to the first library loaded in the process and cannot
//! switch later, so the environment is made once and shared by every model session; asking for a
//! different library afterwards is an error rather than a silent mix. Files are checked before
//! anything is loaded, so a missing runtime is reported with the command that installs it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

/// The command that installs the engine's files, named in every "missing" error.
pub const SETUP_COMMAND: &str = "scripts/setup-offline-engine.sh";

/// The process's ONNX Runtime: the library it came from and the environment, or why it failed.
static RUNTIME: OnceLock<Result<(PathBuf, Environment), String>> = OnceLock::new();

/// The ORT environment from `library`, loading the library on the first call.
pub fn environment(library: &Path) -> Result<Environment, String> {
    if !library.is_file() {
        return Err(format!(
            "[local] onnxruntime_library: {} not found (the ONNX Runtime library of the Moonshine \
             engine); install it with {SETUP_COMMAND}, or point [local] onnxruntime_library at \
             libonnxruntime.so of ONNX Runtime 1.22 or later",
            library.display()
        ));
    }
    let loaded = RUNTIME.get_or_init(|| {
        let builder = ort::init_from(library)
            .map_err(|e| format!("[local] onnxruntime_library: cannot load it: {e}"))?;
        let env = builder
            .with_name("voxgate")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("ONNX Runtime: cannot create its environment: {e}"))?;
        Ok((library.to_path_buf(), env))
    });
    match loaded {
        Ok((path, env)) if path == library => Ok(env.clone()),
        Ok((path, _)) => Err(format!(
            "[local] onnxruntime_library: {} requested, but this process already loaded ONNX \
             Runtime from {} (one per process)",
            library.display(),
            path.display()
        )),
        Err(e) => Err(e.clone()),
    }
}
