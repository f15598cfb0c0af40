//! Writes the seed corpus: `cargo run --example seeds -- [DIR]` (default `seeds`).
fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    let written = mirrorgate_fuzz::seeds::write(std::path::Path::new(&dir))?;
    println!("{written} seeds written under {dir}");
    Ok(())
}
