//! Compiles proto/ with protox (no protoc binary) into tonic/prost code and a descriptor set
//! that keeps custom options such as `google.api.http`.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let root = root.canonicalize()?;
    let mut files = Vec::new();
    collect(&root.join("chatmesh"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;

    // why: re-encoding the prost_types set would drop extensions such as google.api.http.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("chatmesh_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure().generate_default_stubs(true).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

fn collect(dir: &std::path::Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    Ok(())
}
