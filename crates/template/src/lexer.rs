//! Splits template source into tokens exactly like Django's `Lexer`:
//! a tag never spans a newline, `{# #}` comments vanish, and `verbatim`
//! blocks are passed through as text until their matching end tag.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Text,
    Var,
    Block,
    Comment,
}

/// One token: `content` is the stripped inside of a tag, or the raw text.
#[derive(Debug, Clone)]
pub struct Token<'s> {
    pub kind: TokenKind,
    pub content: &'s str,
    /// Byte offset of the token in the source.
    pub offset: usize,
}

/// Tokenize `src`.
pub fn tokenize(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut verbatim: Option<String> = None;
    let mut text_start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        let closer: &[u8] = match bytes[i + 1] {
            b'%' => b"%}",
            b'{' => b"}}",
            b'#' => b"#}",
            _ => {
                i += 1;
                continue;
            }
        };
        // Non-greedy `.*?`: first closer after the opener, no newline before it.
        let mut j = i + 2;
        let mut end = None;
        while j + 1 < bytes.len() + 1 && j < bytes.len() {
            if bytes[j] == b'\n' {
                break;
            }
            if j + 1 < bytes.len() && bytes[j] == closer[0] && bytes[j + 1] == closer[1] {
                end = Some(j + 2);
                break;
            }
            j += 1;
        }
        let Some(end) = end else {
            i += 1;
            continue;
        };
        if text_start < i {
            tokens.push(Token {
                kind: TokenKind::Text,
                content: &src[text_start..i],
                offset: text_start,
            });
        }
        let whole = &src[i..end];
        let inner = src[i + 2..end - 2].trim_matches(is_py_space);
        let kind = match closer[0] {
            b'%' => {
                if let Some(endtag) = &verbatim {
                    if inner == endtag {
                        verbatim = None;
                        TokenKind::Block
                    } else {
                        TokenKind::Text
                    }
                } else {
                    if inner == "verbatim" || inner.starts_with("verbatim ") {
                        verbatim = Some(format!("end{inner}"));
                    }
                    TokenKind::Block
                }
            }
            _ if verbatim.is_some() => TokenKind::Text,
            b'}' => TokenKind::Var,
            _ => TokenKind::Comment,
        };
        tokens.push(Token {
            kind,
            content: if kind == TokenKind::Text {
                whole
            } else {
                inner
            },
            offset: i,
        });
        i = end;
        text_start = end;
    }
    if text_start < src.len() {
        tokens.push(Token {
            kind: TokenKind::Text,
            content: &src[text_start..],
            offset: text_start,
        });
    }
    tokens
}

/// Python's `str.strip()` whitespace.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_do_not_span_lines() {
        let t = tokenize("a{{ x\n}}b{{ y }}");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].content, "a{{ x\n}}b");
        assert_eq!(t[1].content, "y");
    }

    #[test]
    fn verbatim_passes_tags() {
        let t = tokenize("{% verbatim %}{{ x }}{% endverbatim %}");
        assert_eq!(t[1].kind, TokenKind::Text);
        assert_eq!(t[2].kind, TokenKind::Block);
    }
}
