//! Sets `METRICSD_COMMIT`, the git revision `/health` and `/api/v1/status/buildinfo`
//! report: `METRICSD_COMMIT` from the build's environment when given (a build from a
//! source archive can pass it), else `git rev-parse --short=12 HEAD`, else `unknown`
//! (built outside git, or without git). Cheap (a few `git` calls) and never fails the build.
//! Reruns when HEAD moves: `HEAD` itself (checkout) and the ref it names, loose or packed
//! (commit), found with `git rev-parse --git-path` so that a worktree, whose `.git` is a
//! file, watches its own `HEAD` and the shared refs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The trimmed output of `git -C dir args...`, or `None` if it fails or prints nothing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Where git keeps `name` (`HEAD`, `refs/heads/x`, `packed-refs`), as an absolute path.
fn git_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(git(dir, &["rev-parse", "--git-path", name])?);
    Some(if p.is_absolute() { p } else { dir.join(p) })
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=METRICSD_COMMIT");
    if let Some(c) = std::env::var("METRICSD_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
    {
        println!("cargo:rustc-env=METRICSD_COMMIT={c}");
        return;
    }
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"]);
    if commit.is_some() {
        // Only existing paths: cargo reruns the script on every build for a missing one.
        for name in ["HEAD", "packed-refs"] {
            if let Some(p) = git_path(&dir, name).filter(|p| p.is_file()) {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
        // A branch ref that is only packed is watched through its directory, where the next
        // commit writes it.
        if let Some(p) = git(&dir, &["symbolic-ref", "-q", "HEAD"]).and_then(|r| git_path(&dir, &r)) {
            let p = if p.is_file() {
                Some(p)
            } else {
                p.parent().map(Path::to_path_buf)
            };
            if let Some(p) = p.filter(|p| p.exists()) {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=METRICSD_COMMIT={commit}");
}
