//! Links Debian's libsrt (package libsrt-openssl-dev, pkg-config name `srt`).

fn main() {
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("1.5.0")
        .probe("srt")
    {
        panic!(
            "libsrt >= 1.5 not found through pkg-config ({e}); install libsrt-openssl-dev \
             (scripts/install-deps.sh does)"
        );
    }
}
