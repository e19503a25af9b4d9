//! Build script of `voxgate-actors`: with the `local` feature, compiles the C shim that receives
//! PocketSphinx's log messages (`src/recognizer/local/log_shim.c`). PocketSphinx itself is not
//! needed to build: it is loaded at run time.

fn main() {
    #[cfg(feature = "local")]
    {
        println!("cargo:rerun-if-changed=src/recognizer/local/log_shim.c");
        cc::Build::new()
            .file("src/recognizer/local/log_shim.c")
            .warnings(true)
            .compile("voxgate_pocketsphinx_log");
    }
}
