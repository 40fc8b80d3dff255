use session_derive::Session;

#[derive(Session)]
union UserSession {
    user_id: u64,
    flags: u32,
}

fn main() {}
