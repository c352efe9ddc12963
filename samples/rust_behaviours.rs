//! A Rust program for the static-musl tests: built with
//! `rustc --target x86_64-unknown-linux-musl` (a static-pie musl executable
//! with symbols), it runs a program, connects out, creates a file and starts
//! a thread with the standard library, and prints what happened.
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("");
    let arg = args.get(2).cloned().unwrap_or_default();
    match what {
        "spawn" => match std::process::Command::new("/bin/echo").arg("rust-spawn-ran").status() {
            Ok(s) => println!("spawn ok {}", s.code().unwrap_or(-1)),
            Err(e) => println!("spawn error {:?}", e.kind()),
        },
        "connect" => match std::net::TcpStream::connect(("127.0.0.1", arg.parse::<u16>().unwrap_or(0))) {
            Ok(_) => println!("connect ok"),
            Err(e) => println!("connect error {:?}", e.kind()),
        },
        "create" => match std::fs::File::create(&arg).and_then(|mut f| f.write_all(b"made by rust\n")) {
            Ok(()) => println!("create ok"),
            Err(e) => println!("create error {:?}", e.kind()),
        },
        "thread" => {
            let t = std::thread::spawn(|| (1..=10u64).product::<u64>());
            println!("thread ok {}", t.join().unwrap_or(0));
        }
        _ => {
            eprintln!("usage: rust_behaviours spawn|connect PORT|create FILE|thread");
            std::process::exit(2);
        }
    }
    println!("done");
}
