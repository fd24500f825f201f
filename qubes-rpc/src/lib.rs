//! The qvault wire protocol and its qrexec transport.
//!
//! This crate is the only thing the vault (`qvault`) and the client (`qvault-gpg`)
//! share on the wire. Its core is sans-I/O: typed messages ([`messages`]) and a
//! length-prefixed frame codec ([`frame`]) that checks every length against a limit
//! before it allocates. [`transport`] is a thin layer: spawning `qrexec-client-vm`
//! on the client side, reading the socket-service descriptor on the vault side.
//!
//! It must never carry secret key material: no message type can hold one, and no
//! request can ask for one. The format is specified in `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod canon;
pub mod frame;
pub mod messages;
pub mod names;
pub mod prehash;
pub mod transport;

pub use frame::{FrameError, FrameReader, FrameWriter, CHUNK_SIZE, MAX_FRAME};
pub use messages::*;
pub use names::{KeyArgument, NameError, QubeName, ServiceName};
