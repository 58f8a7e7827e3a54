//! The project's one CSV dialect (RFC 4180 quoting, a fixed header, no line
//! breaks inside fields), read by file linkage and the paper answers'
//! upload, written by the case-file export and the mock departments.

/// The records of a CSV text whose first line must be `header` (a UTF-8
/// BOM is allowed): `(line number, fields or why the line is malformed)`
/// for each line that is not blank, the header being line 1. A wrong
/// header is refused without echoing it: a file without one starts with a
/// person's data.
pub fn records<'a>(
    text: &'a str,
    header: &str,
) -> Result<impl Iterator<Item = (usize, Result<Vec<String>, String>)> + 'a, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first.trim_end() == header => {}
        Some(_) => return Err(format!("line 1: the header must be '{header}'")),
        None => return Err("line 1: the file is empty".to_owned()),
    }
    Ok(lines
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, split_line(line.trim_end_matches('\r')))))
}

/// Splits one CSV line (RFC 4180 quoting, no line breaks inside fields).
pub fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                    if !matches!(chars.peek(), None | Some(',')) {
                        return Err("text after a closing quote".to_owned());
                    }
                }
            }
            '"' => return Err("a quote inside an unquoted field".to_owned()),
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".to_owned());
    }
    fields.push(field);
    Ok(fields)
}

/// Appends one field, quoted when it holds a separator or a quote.
pub fn push_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quoting_follows_rfc_4180() {
        assert_eq!(
            split_line("a,\"b,c\",\"d\"\"e\"").unwrap(),
            vec!["a", "b,c", "d\"e"]
        );
        assert!(split_line("a,\"b").is_err());
        assert!(split_line("a,b\"c").is_err());
        assert!(split_line("\"a\"b").is_err());
    }

    #[test]
    fn records_number_lines_and_refuse_a_wrong_header_without_echoing_it() {
        let got: Vec<_> = records("\u{feff}a,b\r\n1,2\n\n3,\"4\n", "a,b")
            .unwrap()
            .collect();
        assert_eq!(got[0], (2, Ok(vec!["1".to_owned(), "2".to_owned()])));
        assert_eq!(got[1].0, 4);
        assert!(got[1].1.is_err());
        let e = records("ヤマダ,1980-01-01\n", "a,b").err().unwrap();
        assert!(e.starts_with("line 1: ") && !e.contains("ヤマダ"));
        assert!(records("", "a,b").is_err());
    }

    proptest! {
        #[test]
        fn quoted_fields_round_trip(fields in proptest::collection::vec("[^\\r\\n]{0,12}", 1..6)) {
            let line = fields
                .iter()
                .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(",");
            prop_assert_eq!(split_line(&line).unwrap(), fields);
        }

        #[test]
        fn written_fields_read_back(fields in proptest::collection::vec("[^\\r\\n]{0,12}", 1..6)) {
            let mut line = String::new();
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                push_field(&mut line, f);
            }
            prop_assert_eq!(split_line(&line).unwrap(), fields);
        }
    }
}
