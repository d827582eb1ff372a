// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.
[
    ("index.html", include_bytes!("index.html").as_slice()),
    ("assets/main-2HPGGRMA.css", include_bytes!("assets/main-2HPGGRMA.css").as_slice()),
    ("assets/main-MCIOE2S6.js", include_bytes!("assets/main-MCIOE2S6.js").as_slice()),
    ("assets/natter_web_bg-F6YY3XXA.wasm", include_bytes!("assets/natter_web_bg-F6YY3XXA.wasm").as_slice()),
]
