//! Fast unit tests of the planner's safety decisions on small synthetic
//! files (no compiler at test time): which bytes count as instructions and
//! branch targets ([`crate::code`]), which instructions may move
//! ([`crate::moved`]), what the plan does with them ([`crate::plan`],
//! [`crate::libplan`]), and the readers and encodings around them.
//!
//! They live here, one file per module under test, rather than at the
//! bottom of each module, to keep out of the way of edits to those modules.

mod synth;

mod code;
mod dynamic;
mod elf;
mod libplan;
mod moved;
mod plan;
mod restore;
