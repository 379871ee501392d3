pub mod libs;
