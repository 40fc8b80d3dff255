use session_derive::Session;

#[derive(Session)]
struct UserSession<'a> {
    #[session(identity)]
    user_id: Option<&'a str>,
}

fn main() {}
