//! Ready-made handlers. Each serves TCP and UDP alike.
//!
//! * [`Daytime`]: the local time as text (the seed's time server).
//! * [`Greeting`]: fixed bytes (the seed's threaded server says `connected`).
//! * [`Echo`]: sends back what it receives.

mod daytime;
mod echo;
mod greeting;

pub use daytime::Daytime;
pub use echo::Echo;
pub use greeting::Greeting;
