use super::{Block, Report};

/// Markdown with images referenced by their relative paths.
pub fn to_markdown(r: &Report) -> String {
    let mut out = format!("# {}\n\n", r.title);
    for b in &r.blocks {
        match b {
            Block::Heading(s) => out += &format!("## {s}\n\n"),
            Block::Paragraph(s) => out += &format!("{s}\n\n"),
            Block::Callout(s) => out += &format!("> **Note:** {s}\n\n"),
            Block::Table { header, rows } => {
                out += &format!("| {} |\n", header.join(" | "));
                out += &format!("|{}\n", "---|".repeat(header.len()));
                for row in rows {
                    out += &format!("| {} |\n", row.join(" | "));
                }
                out += "\n";
            }
            Block::Image { caption, path, .. } => out += &format!("![{caption}]({path})\n\n"),
        }
    }
    out
}
