//! The tables `status` and `service-account list` print.

use snykey::wire::CredentialList;

/// Left-aligned columns two spaces apart; the last column is not padded.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let last = header.len().saturating_sub(1);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()).take(last) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i < last {
                let pad = widths[i].saturating_sub(c.chars().count());
                l.push_str(c);
                l.push_str(&" ".repeat(pad + 2));
            } else {
                l.push_str(c);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// `snykey status`.
pub fn status(list: &CredentialList) -> String {
    if list.credentials.is_empty() {
        return "no credentials: add one with `snykey put` or `snykey login`\n".into();
    }
    let header = [
        "ORG",
        "CLIENT",
        "KIND",
        "STATE",
        "EXPIRES",
        "NEXT REFRESH",
        "LAST REFRESH",
        "FAILURES",
        "LAST ERROR",
    ];
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    // Published tokens (`[publish]`): a column only when some are.
    let published = list.credentials.iter().any(|c| c.published.is_some());
    let mut header = header.to_vec();
    if published {
        header.insert(header.len() - 1, "PUBLISHED");
    }
    let rows: Vec<Vec<String>> = list
        .credentials
        .iter()
        .map(|c| {
            let mut row = vec![
                c.org_id.clone(),
                c.client_id.clone(),
                c.kind.as_str().into(),
                c.state.as_str().into(),
                dash(&c.expires_at),
                dash(&c.next_refresh_at),
                dash(&c.last_refresh_at),
                c.failures.to_string(),
                dash(&c.last_error),
            ];
            if published {
                row.insert(row.len() - 1, publish_cell(c.published.as_ref()));
            }
            row
        })
        .collect();
    render(&header, &rows)
}

/// What the PUBLISHED column says: until when, why none, or the failure.
fn publish_cell(p: Option<&snykey::wire::PublishStatus>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p.failures > 0 => format!(
            "failing ({}x): {}",
            p.failures,
            p.last_error.as_deref().unwrap_or("-")
        ),
        Some(p) => match (&p.expires_at, p.withdrawn) {
            (Some(exp), _) => format!("until {exp}"),
            (None, Some(w)) => format!("withdrawn ({})", w.as_str()),
            (None, None) => "not seen yet".into(),
        },
    }
}

/// `snykey service-account list`.
pub fn service_accounts(list: &snykey::wire::ServiceAccountList) -> String {
    if list.service_accounts.is_empty() {
        return "no service accounts\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .service_accounts
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.name.clone(),
                s.auth_type.clone(),
                s.client_id.clone(),
            ]
        })
        .collect();
    render(&["ID", "NAME", "AUTH TYPE", "CLIENT ID"], &rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_and_the_last_is_not_padded() {
        let out = super::render(
            &["A", "BB", "C"],
            &[
                vec!["xxx".into(), "y".into(), "last one".into()],
                vec!["é".into(), "".into(), "z".into()],
            ],
        );
        assert_eq!(out, "A    BB  C\nxxx  y   last one\né        z\n");
    }
}
