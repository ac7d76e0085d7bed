//! vaxctl's library side: operations the CLI runs that tests also drive.

pub mod backup;
pub mod smoke;
pub mod synthetic;

/// A progress bar with a rate and the time left (hidden when `quiet`, for `--json` output).
pub fn progress(count: usize, what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(count as u64).with_message(what.to_owned());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template"),
    );
    bar
}
