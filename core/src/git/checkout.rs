//! What is at a checkout location inside the content folder, always looked at through
//! [`crate::confine::Beneath`]: a checkout location that is a symlink, or a `.git` or
//! `.gitmodules` symlink planted there (by an earlier initializer or a restored snapshot), never
//! leads the daemon, or git run there, out of the content folder.

use std::ffi::OsStr;
use std::path::Path;

use crate::confine::{kind_at, Beneath, ConfineError, EntryKind};
use crate::error::{Error, Result};

/// What a checkout location holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// A folder without `.git` (content of an earlier initializer, or the content root).
    Folder,
    /// A folder with a `.git` folder.
    WorkingCopy,
}

/// Creates the folders above `checkout` (relative to `content`) and says what is at the checkout
/// location, for a clone into it. A location that is (or passes through) a symlink, a `.git`
/// that is not a folder, or a `.gitmodules` that is not a regular file is refused: git would
/// follow them out of the content folder.
pub async fn prepare_clone(content: &Path, checkout: &Path) -> Result<Found> {
    let (content, checkout) = (content.to_path_buf(), checkout.to_path_buf());
    blocking(move || inspect_for_clone(&content, &checkout)).await
}

/// Whether `<checkout>/.git` exists in any form (not following a symlink); a checkout location
/// that passes through a symlink counts as having something there.
pub async fn has_git_entry(content: &Path, checkout: &Path) -> Result<bool> {
    let (content, git) = (content.to_path_buf(), checkout.join(".git"));
    blocking(
        move || match Beneath::open(&content).and_then(|c| c.kind_of(&git)) {
            Ok(kind) => Ok(kind.is_some()),
            Err(e) if e.is_refusal() => Ok(true),
            Err(e) => Err(cannot_look(e)),
        },
    )
    .await
}

/// Whether the checkout has a `.gitmodules` regular file for `git submodule update`. One that is
/// not a regular file (a symlink, pointing anywhere) is not the repository's: git would read
/// through it, so submodules are left alone (logged).
pub async fn has_gitmodules_file(content: &Path, checkout: &Path) -> Result<bool> {
    let (content, file) = (content.to_path_buf(), checkout.join(".gitmodules"));
    let kind = blocking(move || {
        Beneath::open(&content)
            .and_then(|c| c.kind_of(&file))
            .map_err(cannot_look)
    })
    .await?;
    match kind {
        Some(EntryKind::File) => Ok(true),
        None => Ok(false),
        Some(kind) => {
            tracing::warn!(checkout = %checkout.display(), ?kind, ".gitmodules is not a regular file; submodules are not initialized");
            Ok(false)
        }
    }
}

/// Whether `checkout` is a plain working copy by its entries: reached without a symlink, `.git`
/// a folder, `.gitmodules` (which git reads, through a symlink too) a regular file if any.
pub(super) fn is_plain_working_copy(
    content: &Path,
    checkout: &Path,
) -> std::result::Result<bool, ConfineError> {
    let content = Beneath::open(content)?;
    let dir = match content.open_dir(checkout) {
        Ok(dir) => dir,
        Err(e) if e.is_refusal() => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(
        kind_at(&dir, OsStr::new(".git"))? == Some(EntryKind::Folder)
            && matches!(
                kind_at(&dir, OsStr::new(".gitmodules"))?,
                None | Some(EntryKind::File)
            ),
    )
}

fn inspect_for_clone(content: &Path, checkout: &Path) -> Result<Found> {
    let shown = checkout.display();
    let content = Beneath::open(content)
        .map_err(|e| Error::InitFailed(format!("cannot open the content folder: {e}")))?;
    if let Some(parent) = checkout.parent() {
        content.create_dir_all(parent).map_err(|e| {
            Error::InitFailed(format!(
                "cannot create the checkout location {shown:?}: {e}"
            ))
        })?;
    }
    let dir = match content.open_dir(checkout) {
        Ok(dir) => dir,
        Err(ConfineError::NotFound) => return Ok(Found::Nothing),
        Err(e) => {
            return Err(Error::InitFailed(format!(
                "the checkout location {shown:?} cannot be used: {e}"
            )))
        }
    };
    let kind = |name: &str| {
        kind_at(&dir, OsStr::new(name)).map_err(|e| {
            Error::InitFailed(format!(
                "cannot look at the checkout location {shown:?}: {e}"
            ))
        })
    };
    match kind(".git")? {
        Some(EntryKind::Folder) => return Ok(Found::WorkingCopy),
        None => {}
        Some(_) => {
            return Err(Error::InitFailed(format!(
                "the checkout location {shown:?} has a .git that is not a folder (a symlink or a file): it is neither used nor replaced"
            )))
        }
    }
    // git reads `.gitmodules` of the folder it clones into (fetch does), through a symlink too.
    match kind(".gitmodules")? {
        None | Some(EntryKind::File) => Ok(Found::Folder),
        Some(_) => Err(Error::InitFailed(format!(
            "the checkout location {shown:?} has a .gitmodules that is not a regular file (a symlink?): git is not run there"
        ))),
    }
}

/// Runs a few file-system calls off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, Error> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Error::internal)?
}

/// A failure of the system while looking at a checkout: the initializer cannot go on.
fn cannot_look(e: ConfineError) -> Error {
    Error::InitFailed(format!("cannot look at the checkout: {e}"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    /// `base/content` with `base/outside` holding a `.git` folder and a `.gitmodules` file.
    fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let content = tmp.path().join("content");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join(".git")).expect("mkdir");
        fs::write(outside.join(".gitmodules"), "[submodule").expect("write");
        fs::create_dir_all(&content).expect("mkdir");
        (tmp, content, outside)
    }

    #[test]
    fn planted_symlinks_are_refused_and_not_followed() {
        let (_tmp, content, outside) = setup();
        symlink(&outside, content.join("linked")).expect("symlink");
        fs::create_dir_all(content.join("git-link")).expect("mkdir");
        symlink(outside.join(".git"), content.join("git-link/.git")).expect("symlink");
        fs::create_dir_all(content.join("modules-link")).expect("mkdir");
        symlink(
            outside.join(".gitmodules"),
            content.join("modules-link/.gitmodules"),
        )
        .expect("symlink");
        for (checkout, why) in [
            ("linked", "symlink"),
            ("linked/sub", "symlink"),
            ("git-link", ".git"),
            ("modules-link", ".gitmodules"),
        ] {
            let err = inspect_for_clone(&content, Path::new(checkout)).expect_err(checkout);
            assert!(err.to_string().contains(why), "{checkout}: {err}");
            assert!(
                !err.to_string().contains(content.to_str().expect("utf-8")),
                "{err}"
            );
            assert!(
                !is_plain_working_copy(&content, Path::new(checkout)).expect(checkout),
                "{checkout} is no working copy git may run in"
            );
        }
        assert!(!outside.join("sub").exists(), "no folder made outside");
    }

    #[test]
    fn what_is_there_for_a_clone() {
        let (_tmp, content, _outside) = setup();
        assert_eq!(
            inspect_for_clone(&content, Path::new("a/b/repo")).expect("nothing"),
            Found::Nothing
        );
        assert!(content.join("a/b").is_dir(), "the folders above are made");
        assert_eq!(
            inspect_for_clone(&content, Path::new("")).expect("root"),
            Found::Folder
        );
        fs::create_dir_all(content.join("wc/.git")).expect("mkdir");
        fs::write(content.join("wc/.gitmodules"), "").expect("write");
        assert_eq!(
            inspect_for_clone(&content, Path::new("wc")).expect("working copy"),
            Found::WorkingCopy
        );
        assert!(is_plain_working_copy(&content, Path::new("wc")).expect("wc"));
        assert!(!is_plain_working_copy(&content, Path::new("missing")).expect("missing"));
    }
}
