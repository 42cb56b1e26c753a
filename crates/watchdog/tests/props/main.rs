//! Property tests: nothing a person or another program can put in a znode or a config file
//! makes the watchdog's decoding or config loading panic, and every error says where.

mod config;
mod records;
mod strategy;
