//! The UniFFI binding generator, pinned to the workspace's UniFFI version:
//! `cargo run -p doorstep-uniffi-bindgen -- generate --library <cdylib> --language kotlin --out-dir …`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
