//! Reports: one self-contained HTML file (images embedded as data URIs, no
//! external URL) and its Markdown twin, built from the same sections.

mod html;
mod markdown;

pub use html::to_html;
pub use markdown::to_markdown;

/// A block of report content.
#[derive(Debug, Clone)]
pub enum Block {
    Heading(String),
    Paragraph(String),
    /// Text the reader must not miss (where the Hessian-aware model is not better).
    Callout(String),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A PNG image and its caption; embedded in HTML, referenced by path in Markdown.
    Image {
        png: Vec<u8>,
        caption: String,
        path: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Self {
        Report {
            title: title.into(),
            blocks: vec![],
        }
    }

    pub fn heading(&mut self, s: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Heading(s.into()));
        self
    }

    pub fn paragraph(&mut self, s: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Paragraph(s.into()));
        self
    }

    pub fn callout(&mut self, s: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Callout(s.into()));
        self
    }

    pub fn table(&mut self, header: Vec<String>, rows: Vec<Vec<String>>) -> &mut Self {
        self.blocks.push(Block::Table { header, rows });
        self
    }

    pub fn image(&mut self, png: Vec<u8>, caption: impl Into<String>, path: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Image {
            png,
            caption: caption.into(),
            path: path.into(),
        });
        self
    }
}
