pub mod chunked;
pub mod parse;
