//! The admin web app's files: compiled into the binary (no network or
//! files needed at run time), or read from `admin_web_path` when set.

use std::path::{Component, Path};

/// `(path under the app root, content type, bytes)` of every embedded file.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("web/index.html")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("web/style.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("web/app.js")),
    ("cluster.js", "text/javascript; charset=utf-8", include_bytes!("web/cluster.js")),
    ("actions.js", "text/javascript; charset=utf-8", include_bytes!("web/actions.js")),
    ("channel.js", "text/javascript; charset=utf-8", include_bytes!("web/channel.js")),
    ("vendor/uplot/uPlot.esm.js", "text/javascript; charset=utf-8", include_bytes!("web/vendor/uplot/uPlot.esm.js")),
    ("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("web/vendor/uplot/uPlot.min.css")),
    (
        "vendor/centrifuge/centrifuge.js",
        "text/javascript; charset=utf-8",
        include_bytes!("web/vendor/centrifuge/centrifuge.js"),
    ),
];

/// The content type a file name calls for.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The file at `name` (relative to the app root, e.g. `app.js`): from
/// `dir` when given, else embedded. `None` for anything else, including
/// names that would leave `dir` (`..`, absolute paths).
pub(crate) async fn file(dir: Option<&str>, name: &str) -> Option<(&'static str, Vec<u8>)> {
    match dir {
        None => FILES.iter().find(|(n, _, _)| *n == name).map(|(_, t, b)| (*t, b.to_vec())),
        Some(dir) => {
            let relative = Path::new(name);
            if name.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
                return None;
            }
            let bytes = tokio::fs::read(Path::new(dir).join(relative)).await.ok()?;
            Some((content_type(name), bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn serves_embedded_files_and_nothing_outside_the_directory() {
        assert!(super::file(None, "index.html").await.is_some());
        assert!(super::file(None, "vendor/uplot/uPlot.esm.js").await.is_some());
        assert!(super::file(None, "../Cargo.toml").await.is_none());
        let dir = env!("CARGO_MANIFEST_DIR");
        assert!(super::file(Some(dir), "Cargo.toml").await.is_some());
        assert!(super::file(Some(&format!("{dir}/src")), "../Cargo.toml").await.is_none());
        assert!(super::file(Some(dir), "/etc/passwd").await.is_none());
    }
}
