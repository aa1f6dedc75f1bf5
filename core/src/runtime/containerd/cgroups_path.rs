//! The cgroup of a container from its OCI spec's `linux.cgroupsPath`: a path as it is (the
//! cgroupfs driver), or the systemd driver's `slice:prefix:name` expanded as runc does.

/// The cgroup path of `cgroups_path`, or `None` when it is in neither form (the caller then reads
/// the process's own cgroup).
pub(crate) fn expand(cgroups_path: &str) -> Option<String> {
    if cgroups_path.is_empty() {
        return None;
    }
    if cgroups_path.starts_with('/') {
        return Some(cgroups_path.to_string());
    }
    let mut parts = cgroups_path.split(':');
    let (Some(slice), Some(prefix), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if name.is_empty() || name.contains('/') || prefix.contains('/') {
        return None;
    }
    let parent = expand_slice(if slice.is_empty() {
        "system.slice"
    } else {
        slice
    })?;
    // A scope unless the name is a slice itself (runc's getUnitName).
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Some(if parent == "/" {
        format!("/{unit}")
    } else {
        format!("{parent}/{unit}")
    })
}

/// `a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice` (systemd nests slices by their dashes).
fn expand_slice(slice: &str) -> Option<String> {
    let stem = slice.strip_suffix(".slice")?;
    if stem.is_empty() || slice.contains('/') {
        return None;
    }
    if stem == "-" {
        return Some("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for component in stem.split('-') {
        if component.is_empty() {
            return None;
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(component);
        path.push_str(".slice");
        prefix.push_str(component);
        prefix.push('-');
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_paths_are_kept() {
        assert_eq!(
            expand("/kubepods/burstable/pod1/c4").as_deref(),
            Some("/kubepods/burstable/pod1/c4")
        );
        assert_eq!(expand(""), None);
        assert_eq!(expand("relative/path"), None);
    }

    #[test]
    fn systemd_paths_are_expanded_like_runc() {
        assert_eq!(
            expand("kubepods-burstable-pod1.slice:cri-containerd:abc").as_deref(),
            Some("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope")
        );
        assert_eq!(
            expand("kubepods.slice:cri-containerd:abc").as_deref(),
            Some("/kubepods.slice/cri-containerd-abc.scope")
        );
        assert_eq!(
            expand(":docker:abc").as_deref(),
            Some("/system.slice/docker-abc.scope")
        );
        assert_eq!(expand("-.slice:p:abc").as_deref(), Some("/p-abc.scope"));
        assert_eq!(
            expand("user.slice:p:inner.slice").as_deref(),
            Some("/user.slice/inner.slice")
        );
    }

    #[test]
    fn malformed_systemd_paths_are_refused() {
        for bad in [
            "kubepods:p:abc",
            "a--b.slice:p:abc",
            "-a.slice:p:abc",
            ".slice:p:abc",
            "a.slice:p:",
            "a.slice:p:x/y",
            "a.slice:p",
            "a.slice:p:x:y",
        ] {
            assert_eq!(expand(bad), None, "{bad}");
        }
    }
}
