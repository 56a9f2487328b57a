//! GVariant text format (as `gdbus call` and runc's `org.systemd.property.<Name>`
//! annotations write values), parsed into a D-Bus `Value`: the subset systemd's unit
//! properties take.
//!
//! - `true`, `false`: a boolean; `'text'` or `"text"` (with `\` escapes): a string;
//! - a number: int32 when it has no `.`/exponent, else double (GVariant's defaults);
//!   hexadecimal `0x…` too;
//! - a type keyword before a value fixes its type: `boolean`, `byte`, `int16`, `uint16`,
//!   `int32`, `uint32`, `int64`, `uint64`, `double`, `string`, `objectpath`
//!   (`uint64 123`), as does `@` with a signature (`@t 123`, `@as []`);
//! - `[...]`: an array of strings (`['a', 'b']`).
//!
//! Anything else is refused with what was not understood.

use anyhow::{Result, bail};

use super::dbus::Value;

/// Parses one GVariant text value.
pub fn parse(text: &str) -> Result<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let v = p.value(None)?;
    p.skip_ws();
    if p.at != p.s.len() {
        bail!("unexpected {:?} after the value", p.rest());
    }
    Ok(v)
}

/// The D-Bus signature of a type keyword or `@` annotation.
fn keyword_sig(word: &str) -> Option<&'static str> {
    Some(match word {
        "boolean" | "b" => "b",
        "byte" | "y" => "y",
        "int16" | "n" => "n",
        "uint16" | "q" => "q",
        "int32" | "i" => "i",
        "uint32" | "u" => "u",
        "int64" | "x" => "x",
        "uint64" | "t" => "t",
        "double" | "d" => "d",
        "string" | "s" => "s",
        "objectpath" | "o" => "o",
        "as" => "as",
        _ => return None,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> String {
        String::from_utf8_lossy(&self.s[self.at..]).into_owned()
    }
    fn skip_ws(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }
    /// A run of letters, digits and `_+-.` (a keyword or a number).
    fn word(&mut self) -> String {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"_+-.".contains(&c))
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.at]).into_owned()
    }

    /// A value, of signature `want` if given.
    fn value(&mut self, want: Option<&'static str>) -> Result<Value> {
        self.skip_ws();
        match self.peek() {
            None => bail!("a value is missing"),
            Some(b'@') if want.is_none() => {
                self.at += 1;
                let start = self.at;
                while self.peek().is_some_and(|c| !c.is_ascii_whitespace()) {
                    self.at += 1;
                }
                let sig = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
                match keyword_sig(&sig).filter(|_| sig.len() <= 2) {
                    Some(sig) => self.value(Some(sig)),
                    None => bail!("type @{sig} is not supported"),
                }
            }
            Some(q @ (b'\'' | b'"')) => {
                let s = self.string(q)?;
                match want {
                    None | Some("s") | Some("o") => Ok(Value::Str(s)),
                    Some(t) => bail!("a string where type {t} was expected"),
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.at += 1;
                        break;
                    }
                    if !items.is_empty() {
                        if self.peek() != Some(b',') {
                            bail!("expected ',' or ']' at {:?}", self.rest());
                        }
                        self.at += 1;
                        self.skip_ws();
                    }
                    match self.peek() {
                        Some(q @ (b'\'' | b'"')) => items.push(self.string(q)?),
                        _ => bail!("only arrays of strings are supported, at {:?}", self.rest()),
                    }
                }
                match want {
                    None | Some("as") => Ok(Value::Strs(items)),
                    Some(t) => bail!("an array where type {t} was expected"),
                }
            }
            Some(_) => {
                let word = self.word();
                if word.is_empty() {
                    bail!("unexpected {:?}", self.rest());
                }
                if want.is_none()
                    && let Some(sig) = keyword_sig(&word).filter(|_| word.len() > 2)
                {
                    return self.value(Some(sig));
                }
                scalar(&word, want)
            }
        }
    }

    /// A quoted string; `q` is the opening quote, at `self.at`.
    fn string(&mut self, q: u8) -> Result<String> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                bail!("unterminated string");
            };
            self.at += 1;
            match c {
                _ if c == q => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        bail!("unterminated string");
                    };
                    self.at += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'a' => out.push(7),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'v' => out.push(11),
                        b'u' | b'U' => {
                            let n = if e == b'u' { 4 } else { 8 };
                            let hex = self.s.get(self.at..self.at + n).unwrap_or_default();
                            let ch = std::str::from_utf8(hex)
                                .ok()
                                .filter(|h| h.len() == n)
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32);
                            let Some(ch) = ch else {
                                bail!("bad \\{} escape in a string", e as char);
                            };
                            self.at += n;
                            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                _ => out.push(c),
            }
        }
        match String::from_utf8(out) {
            Ok(s) if !s.contains('\0') => Ok(s),
            _ => bail!("a string must be UTF-8 without NUL"),
        }
    }
}

/// A boolean or a number of type `want` (or GVariant's default for it).
fn scalar(word: &str, want: Option<&'static str>) -> Result<Value> {
    if word == "true" || word == "false" {
        return match want {
            None | Some("b") => Ok(Value::Bool(word == "true")),
            Some(t) => bail!("a boolean where type {t} was expected"),
        };
    }
    let float = !word.starts_with("0x")
        && !word.starts_with("-0x")
        && (word.contains('.') || word.contains('e') || word.contains('E'));
    let want = want.unwrap_or(if float { "d" } else { "i" });
    if want == "d" {
        return match word.parse::<f64>() {
            Ok(d) if d.is_finite() => Ok(Value::F64(d)),
            _ => bail!("{word:?} is not a number"),
        };
    }
    if float {
        bail!("{word:?} is not an integer (type {want})");
    }
    let (neg, digits) = match word.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, word.strip_prefix('+').unwrap_or(word)),
    };
    let magnitude = match digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    };
    let Ok(magnitude) = magnitude else {
        bail!("{word:?} is not a number");
    };
    let n = if neg {
        -i128::from(magnitude)
    } else {
        i128::from(magnitude)
    };
    let out_of_range = || anyhow::anyhow!("{word} is out of range for type {want}");
    Ok(match want {
        "y" => Value::U8(u8::try_from(n).map_err(|_| out_of_range())?),
        "n" => Value::I16(i16::try_from(n).map_err(|_| out_of_range())?),
        "q" => Value::U16(u16::try_from(n).map_err(|_| out_of_range())?),
        "i" => Value::I32(i32::try_from(n).map_err(|_| out_of_range())?),
        "u" => Value::U32(u32::try_from(n).map_err(|_| out_of_range())?),
        "x" => Value::I64(i64::try_from(n).map_err(|_| out_of_range())?),
        "t" => Value::U64(u64::try_from(n).map_err(|_| out_of_range())?),
        t => bail!("a number where type {t} was expected"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_values_systemd_properties_take() {
        let ok = |s: &str| parse(s).unwrap();
        assert_eq!(ok("uint64 123456789"), Value::U64(123456789));
        assert_eq!(ok("@t 5"), Value::U64(5));
        assert_eq!(
            ok("'inactive-or-failed'"),
            Value::Str("inactive-or-failed".into())
        );
        assert_eq!(ok(r#""a\'b\u00e9""#), Value::Str("a'bé".into()));
        assert_eq!(ok(" true "), Value::Bool(true));
        assert_eq!(ok("boolean false"), Value::Bool(false));
        assert_eq!(ok("42"), Value::I32(42));
        assert_eq!(ok("-7"), Value::I32(-7));
        assert_eq!(ok("0x10"), Value::I32(16));
        assert_eq!(ok("1.5"), Value::F64(1.5));
        assert_eq!(ok("uint32 7"), Value::U32(7));
        assert_eq!(ok("int64 -1"), Value::I64(-1));
        assert_eq!(ok("byte 255"), Value::U8(255));
        assert_eq!(ok("double 2"), Value::F64(2.0));
        assert_eq!(ok("string 'x'"), Value::Str("x".into()));
        assert_eq!(
            ok("['a.service', \"b\"]"),
            Value::Strs(vec!["a.service".into(), "b".into()])
        );
        assert_eq!(ok("@as []"), Value::Strs(vec![]));
        for bad in [
            "",
            "inactive",
            "'open",
            "uint64 -1",
            "2147483648",
            "byte 256",
            "uint64 'x'",
            "1 2",
            "[1, 2]",
            "@a{sv} {}",
            "1.5.5",
            "uint32 1.5",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed as {:?}", parse(bad));
        }
    }
}
