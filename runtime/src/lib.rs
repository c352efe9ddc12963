//! The dfpatch monitoring runtime, `#![no_std]`.
//!
//! This crate is compiled twice: for the host, where its pure parts (the
//! contract, the API table, JSON and time formatting, argument decoding, the
//! policy table reader) are unit tested, and inside `runtime/blob` for
//! `x86_64-unknown-none`, as the freestanding image the rewriter injects.
//! `start.rs` states the rules for code that runs inside a patched program.
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

pub mod apis;
pub mod backstop;
pub mod bytes;
pub mod arch {
    pub mod x86_64;
}
pub mod contract;
pub mod decode;
pub mod dispatch;
pub mod event;
pub mod facts;
pub mod filter;
pub mod glob;
pub mod guard;
pub mod json;
pub mod libplans;
pub mod loader;
pub mod mem;
pub mod nest;
pub mod pool;
pub mod ptable;
pub mod rules;
pub mod sink;
pub mod stacks;
pub mod start;
pub mod symbols;
pub mod sys;
pub mod time;
pub mod unwind;
pub mod uring;
