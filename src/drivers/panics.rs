//! Panics caught at the edge of user code (the action, a pool's factory, a worker's loop run
//! by a pool slot), turned into the text of their message for logs, replies and events.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; a panic in it comes back as `Err` with its message.
///
/// The closure is asserted unwind-safe: every caller goes on with a value it rebuilds or
/// only reads after a panic (an action is the action's own business to keep usable).
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// The text of a panic payload (a `&str` or a `String`), for logs and events.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// A future with a panic in any of its polls caught and returned as the output's `Err`, with
/// its message (as a spawned task's `JoinError` would carry it).
#[cfg(feature = "tokio")]
pub(crate) struct CatchUnwind<F>(pub(crate) F);

#[cfg(feature = "tokio")]
impl<F: std::future::Future + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let future = &mut self.0;
        match catch(|| std::pin::Pin::new(future).poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(message) => Poll::Ready(Err(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_gives_its_message_whatever_its_payload() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(catch(|| -> u8 { panic!("boom") }), Err("boom".to_string()));
        let code = 3;
        assert_eq!(
            catch(|| -> u8 { panic!("code {code}") }),
            Err("code 3".to_string())
        );
        assert_eq!(
            catch(|| -> u8 { std::panic::panic_any(42_u32) }),
            Err("non-string panic payload".to_string())
        );
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn a_future_that_panics_gives_its_message_as_output() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let fine = CatchUnwind(Box::pin(async { 5 }));
        assert_eq!(runtime.block_on(fine), Ok(5));
        let panics = CatchUnwind(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("late boom")
        }));
        let output: Result<(), String> = runtime.block_on(panics);
        assert_eq!(output, Err("late boom".to_string()));
    }
}
