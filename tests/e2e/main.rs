//! End-to-end tests: build the C samples with the system compiler in every
//! flavour, patch them with the real `dfpatch` binary, run them, and check
//! what really happened (files created or not, processes run or not) and the
//! events the runtime wrote.

mod backstop;
mod bad_input;
mod behaviours;
mod benign;
mod busybox;
mod common;
mod doors;
mod golang;
mod learn;
mod libraries;
mod matchers;
mod one_event;
mod properties;
mod runtime;
mod sinks;
mod small_stack;
mod startup;
mod statics;
mod tamper;
mod tools;
