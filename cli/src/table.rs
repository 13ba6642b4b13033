//! Tables for a terminal, as `mdp services` and `mdp top` print them.

use std::time::Duration;

use majordomo_worker::mmi::ServiceStats;

/// The OLDEST column: `-` when nothing is queued, else the age of the oldest request.
pub fn oldest(service: &ServiceStats) -> String {
    if service.queued == 0 {
        return "-".to_string();
    }
    age(service.oldest_queued)
}

/// Milliseconds, seconds, or minutes and seconds (`<1ms` below a millisecond).
fn age(age: Duration) -> String {
    let ms = age.as_millis();
    match ms {
        0 => "<1ms".to_string(),
        1..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", age.as_secs_f64()),
        _ => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
    }
}

/// Columns laid out for a terminal: the first left-aligned, the others right-aligned,
/// two spaces between.
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| match i {
                0 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> ServiceStats {
        ServiceStats {
            name: "echo".into(),
            workers: 4,
            waiting: 3,
            queued: 12,
            served: 1200,
            oldest_queued: Duration::from_millis(1500),
        }
    }

    #[test]
    fn the_oldest_age_is_a_dash_only_when_nothing_is_queued() {
        let ms = Duration::from_millis;
        let idle = ServiceStats {
            queued: 0,
            ..echo()
        };
        assert_eq!(oldest(&idle), "-");
        let just_queued = ServiceStats {
            oldest_queued: ms(0),
            ..echo()
        };
        assert_eq!(oldest(&just_queued), "<1ms");
        assert_eq!(age(ms(0)), "<1ms");
        assert_eq!(age(ms(350)), "350ms");
        assert_eq!(age(ms(1500)), "1.5s");
        assert_eq!(age(ms(185_000)), "3m05s");
    }

    #[test]
    fn columns_align_the_first_left_and_the_others_right_two_spaces_apart() {
        let rows = vec![vec!["echo".to_string(), "4".to_string()]];
        assert_eq!(
            columns(&["SERVICE", "N"], &rows),
            "SERVICE  N\necho     4\n"
        );
    }
}
