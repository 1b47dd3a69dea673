//! The vocabulary every layer shares, with no behaviour of its own beyond checking values:
//! attributes and their rules, mechanisms and their parameters, PINs, and dates. It imports
//! nothing of keygate's but `error`.

pub mod attributes;
pub mod dates;
pub mod handles;
pub mod mechanisms;
pub mod rules;
