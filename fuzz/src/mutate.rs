//! Structure-blind mutations of a valid file: what a damaged download, a
//! truncated copy or a hostile header looks like.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Values that break size arithmetic when they land in a length or dimension field.
const EDGES: [u32; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

/// One to four mutations of `seed`, spliced with `other` at times.
pub fn mutate(rng: &mut ChaCha8Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..7) {
            0 => flip_bits(rng, &mut d),
            1 => {
                // Truncation.
                let n = rng.random_range(0..=d.len());
                d.truncate(n);
            }
            2 => {
                // Splice: our head, another seed's tail.
                let (a, b) = (rng.random_range(0..=d.len()), rng.random_range(0..=other.len()));
                d.truncate(a);
                d.extend_from_slice(&other[b..]);
            }
            3 | 4 => edge_word(rng, &mut d),
            5 => {
                // Duplicate or drop a chunk (shifts every later offset).
                if !d.is_empty() {
                    let a = rng.random_range(0..d.len());
                    let b = rng.random_range(a..=d.len().min(a + 64));
                    if rng.random_bool(0.5) {
                        let chunk = d[a..b].to_vec();
                        d.splice(a..a, chunk);
                    } else {
                        d.drain(a..b);
                    }
                }
            }
            _ => {
                // Random bytes in place.
                for _ in 0..rng.random_range(1..8) {
                    if let Some(i) = (!d.is_empty()).then(|| rng.random_range(0..d.len())) {
                        d[i] = rng.random();
                    }
                }
            }
        }
    }
    d
}

fn flip_bits(rng: &mut ChaCha8Rng, d: &mut [u8]) {
    if d.is_empty() {
        return;
    }
    for _ in 0..rng.random_range(1..=8) {
        let i = rng.random_range(0..d.len());
        d[i] ^= 1 << rng.random_range(0..8);
    }
}

/// An edge value written over a 4- or 8-byte window, big- or little-endian
/// (IDX headers are big-endian, safetensors' and protobuf's lengths little).
fn edge_word(rng: &mut ChaCha8Rng, d: &mut [u8]) {
    if d.len() < 4 {
        return;
    }
    // Headers hold the length fields: bias towards the first 64 bytes.
    let span = if rng.random_bool(0.7) { d.len().min(64) } else { d.len() };
    let at = rng.random_range(0..=span - 4);
    let v = EDGES[rng.random_range(0..EDGES.len())];
    let bytes = if rng.random_bool(0.5) {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    };
    d[at..at + 4].copy_from_slice(&bytes);
    if d.len() >= at + 8 && rng.random_bool(0.25) {
        d[at + 4..at + 8].copy_from_slice(&bytes);
    }
}

/// Text mutations for line formats (CSV, TOML, JSON): byte mutations plus
/// whole-line edits and injected tokens.
pub fn mutate_text(rng: &mut ChaCha8Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    const TOKENS: [&str; 12] = [
        "-1",
        "1e309",
        "NaN",
        "inf",
        "18446744073709551616",
        "\"",
        ",",
        "\n",
        "=",
        "[",
        "{}",
        "\u{0}",
    ];
    if rng.random_bool(0.5) {
        return mutate(rng, seed, other);
    }
    let text = String::from_utf8_lossy(seed);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..rng.random_range(1..=3) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.random_range(0..lines.len());
        match rng.random_range(0..4) {
            0 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            1 => {
                lines.remove(i);
            }
            _ => {
                let l = &mut lines[i];
                let at = (0..=l.len())
                    .filter(|&k| l.is_char_boundary(k))
                    .nth(rng.random_range(0..=l.chars().count()))
                    .unwrap_or(0);
                l.insert_str(at, TOKENS[rng.random_range(0..TOKENS.len())]);
            }
        }
    }
    lines.join("\n").into_bytes()
}
