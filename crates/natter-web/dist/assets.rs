// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.
[
    ("index.html", include_bytes!("index.html").as_slice()),
    ("assets/main-DUB3DM6J.js", include_bytes!("assets/main-DUB3DM6J.js").as_slice()),
    ("assets/main-OQDQT4HT.css", include_bytes!("assets/main-OQDQT4HT.css").as_slice()),
    ("assets/natter_web_bg-F6YY3XXA.wasm", include_bytes!("assets/natter_web_bg-F6YY3XXA.wasm").as_slice()),
]
