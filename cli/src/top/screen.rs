//! The live screen of `mdp top`: ratatui draws the frame and redraws only what changed;
//! crossterm (ratatui's backend) gives raw mode, the alternate screen and the keys.
//!
//! The terminal is restored however the loop ends: by [`Screen`]'s `Drop` on a quit key, on
//! SIGINT, SIGTERM or SIGHUP from outside (the loop sees the flag within [`KEY_WAIT`]) or on
//! an error, by the panic hook `ratatui::try_init` installs on a panic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame as Canvas};

use super::model::{self, title, Frame, Rates, Sample, HEADER};
use crate::error::{CliError, CliResult};

/// How long the loop waits for a key before it looks for a new sample.
const KEY_WAIT: Duration = Duration::from_millis(100);

/// Shows every sample until q, Esc or Ctrl-C, or a stopping signal.
pub fn run(endpoint: &str, samples: Receiver<Sample>) -> CliResult {
    let signalled = stop_on_signals()?;
    let mut screen = Screen::enter()?;
    let mut rates = Rates::default();
    let mut shown: Option<Frame> = None;
    loop {
        loop {
            match samples.try_recv() {
                Ok(sample) => shown = Some(rates.frame(sample)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return Err(CliError::Failed("the sampler thread stopped".into()))
                }
            }
        }
        screen
            .0
            .draw(|canvas| draw(canvas, endpoint, shown.as_ref()))?;
        if signalled.load(Ordering::SeqCst) || quit_pressed(KEY_WAIT)? {
            return Ok(());
        }
    }
}

/// A flag set by SIGINT, SIGTERM or SIGHUP, instead of their default action (ending the
/// process at once, the terminal left raw on the alternate screen).
fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    let signalled = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&signalled))?;
    }
    Ok(signalled)
}

/// The terminal in raw mode on the alternate screen, restored when dropped.
struct Screen(DefaultTerminal);

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen(terminal)),
            Err(error) => {
                // Raw mode may be on already.
                ratatui::restore();
                Err(error)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Waits up to `wait` for a key; true for q, Esc or Ctrl-C (raw mode turns Ctrl-C into a key).
fn quit_pressed(wait: Duration) -> std::io::Result<bool> {
    match event::poll(wait) {
        Ok(true) => {}
        Ok(false) => return Ok(false),
        // A signal: the caller looks at its flag.
        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => return Ok(false),
        Err(error) => return Err(error),
    }
    Ok(match event::read()? {
        Event::Key(key) if key.kind == KeyEventKind::Press => is_quit(key),
        _ => false,
    })
}

fn is_quit(key: KeyEvent) -> bool {
    match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

fn draw(canvas: &mut Canvas, endpoint: &str, frame: Option<&Frame>) {
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(canvas.area());
    canvas.render_widget(Paragraph::new("q quit").style(dim()), bottom);
    let Some(frame) = frame else {
        let waiting = format!("mdp top  {endpoint}\n\nasking the broker...");
        canvas.render_widget(Paragraph::new(waiting), top);
        return;
    };
    let mut header = vec![Line::from(title(endpoint, frame))];
    match &frame.problem {
        Some(problem) => header.extend([Line::default(), Line::from(problem.as_str())]),
        None => header.push(Line::from(model::summary(&frame.totals))),
    }
    canvas.render_widget(Paragraph::new(header), top);
    if frame.problem.is_none() {
        canvas.render_widget(table(frame), body);
    }
}

fn table(frame: &Frame) -> Table<'static> {
    let header = Row::new(
        HEADER
            .iter()
            .enumerate()
            .map(|(i, h)| cell(i, h.to_string())),
    )
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    let rows = frame
        .rows
        .iter()
        .map(|r| Row::new(r.cells().into_iter().enumerate().map(|(i, c)| cell(i, c))));
    let longest = frame.rows.iter().map(|r| r.stats.name.chars().count());
    let name_width = longest.max().unwrap_or(0).max(HEADER[0].len()) as u16;
    let widths = std::iter::once(Constraint::Length(name_width))
        .chain(std::iter::repeat(Constraint::Length(9)).take(HEADER.len() - 1));
    Table::new(rows, widths).header(header)
}

/// The service name left-aligned, the numbers right-aligned.
fn cell(column: usize, text: String) -> Cell<'static> {
    let line = Line::from(text);
    Cell::from(if column == 0 {
        line
    } else {
        line.right_aligned()
    })
}

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_esc_and_ctrl_c_quit_and_other_keys_do_not() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(is_quit(key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(key(KeyCode::Char('x'), KeyModifiers::NONE)));
    }
}
