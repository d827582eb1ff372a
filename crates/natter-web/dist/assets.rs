// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.
[
    ("index.html", include_bytes!("index.html").as_slice()),
    ("assets/main-5ZPMXWIN.css", include_bytes!("assets/main-5ZPMXWIN.css").as_slice()),
    ("assets/main-WX46UCSA.js", include_bytes!("assets/main-WX46UCSA.js").as_slice()),
    ("assets/natter_web_bg-PCY6XSL5.wasm", include_bytes!("assets/natter_web_bg-PCY6XSL5.wasm").as_slice()),
]
