use base64::Engine;

use super::{Block, Report};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}\
th{background:#eee}td:first-child,th:first-child{text-align:left}\
.callout{border-left:4px solid #c60;background:#fff4e5;padding:.5em 1em}\
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:90%;color:#555}";

/// Renders a self-contained page: inline CSS, images as base64 data URIs.
pub fn to_html(r: &Report) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(&r.title)
    );
    for b in &r.blocks {
        match b {
            Block::Heading(s) => out += &format!("<h2>{}</h2>\n", escape(s)),
            Block::Paragraph(s) => out += &format!("<p>{}</p>\n", escape(s)),
            Block::Callout(s) => out += &format!("<p class=\"callout\">{}</p>\n", escape(s)),
            Block::Table { header, rows } => {
                out += "<table><tr>";
                for h in header {
                    out += &format!("<th>{}</th>", escape(h));
                }
                out += "</tr>\n";
                for row in rows {
                    out += "<tr>";
                    for c in row {
                        out += &format!("<td>{}</td>", escape(c));
                    }
                    out += "</tr>\n";
                }
                out += "</table>\n";
            }
            Block::Image { png, caption, .. } => {
                let data = base64::engine::general_purpose::STANDARD.encode(png);
                out += &format!(
                    "<figure><img alt=\"{c}\" src=\"data:image/png;base64,{data}\"><figcaption>{c}</figcaption></figure>\n",
                    c = escape(caption)
                );
            }
        }
    }
    out + "</body></html>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut r = Report::new("A <b> test");
        r.heading("Accuracy")
            .table(
                vec!["model".into(), "acc".into()],
                vec![vec!["x&y".into(), "0.9".into()]],
            )
            .image(vec![137, 80, 78, 71], "plot", "plot.png");
        let html = to_html(&r);
        assert!(html.contains("A &lt;b&gt; test"));
        assert!(html.contains("<td>x&amp;y</td>"));
        assert!(html.contains("data:image/png;base64,iVBORw=="));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
