// Shared by the build scripts of every crate that produces an executable
// (the `hart` binary, test and bench harnesses), via `include!`.
//
// torch-sys links libtorch dynamically but leaves finding it at run time to
// LD_LIBRARY_PATH. We bake the venv's torch/lib into the executable's RUNPATH
// instead, so `target/release/hart` runs with no environment set.
//
// rustc links with `--as-needed`, which drops libtorch_cuda (nothing
// references its symbols directly; it registers the CUDA backend from static
// initialisers). Re-adding it under `--no-as-needed` is what tch-rs's own
// build does, and makes the same binary use CUDA wherever the wheel's CUDA
// libraries and a driver are present.
fn link_torch() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report its libtorch directory; run through scripts/env.sh");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
