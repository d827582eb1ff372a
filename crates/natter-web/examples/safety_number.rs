//! Prints natter-crypto's safety number, computed natively, for two users given as
//! `USER_ID MASTER_KEY USER_ID MASTER_KEY`: the browser tests compare it with the number the
//! wasm build computes in the page.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user_a, master_a, user_b, master_b] = args.as_slice() else {
        return Err("usage: safety_number USER_ID MASTER_KEY USER_ID MASTER_KEY".into());
    };
    let number =
        natter_crypto::safety_number((user_a.parse()?, master_a), (user_b.parse()?, master_b));
    println!("{number}");
    Ok(())
}
