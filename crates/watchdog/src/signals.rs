//! Signals to the watchdog, mapped to a domain enum: stop requests, reload, and signals to
//! forward.

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What a signal to the watchdog asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalRequest {
    /// SIGTERM: planned stop.
    Terminate,
    /// SIGINT: planned stop; a second one kills the child at once.
    Interrupt,
    /// SIGHUP (`systemctl reload`): what it does is `restart.on-reload`'s choice.
    Reload,
    /// SIGUSR1, SIGUSR2: pass on to the child's process group.
    Forward(Signal),
}

/// Installs the handlers and returns a channel of [`SignalRequest`]s. Must be called inside a tokio
/// runtime; the handlers stay installed for the life of the process.
pub fn listen() -> std::io::Result<mpsc::UnboundedReceiver<SignalRequest>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let table = [
        (SignalKind::terminate(), SignalRequest::Terminate),
        (SignalKind::interrupt(), SignalRequest::Interrupt),
        (SignalKind::hangup(), SignalRequest::Reload),
        (
            SignalKind::user_defined1(),
            SignalRequest::Forward(Signal::SIGUSR1),
        ),
        (
            SignalKind::user_defined2(),
            SignalRequest::Forward(Signal::SIGUSR2),
        ),
    ];
    for (kind, control) in table {
        let mut stream = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(control).is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}
