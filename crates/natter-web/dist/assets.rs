// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.
[
    ("index.html", include_bytes!("index.html").as_slice()),
    ("assets/main-EQ6HHASQ.js", include_bytes!("assets/main-EQ6HHASQ.js").as_slice()),
    ("assets/main-OQDQT4HT.css", include_bytes!("assets/main-OQDQT4HT.css").as_slice()),
    ("assets/natter_web_bg-XEJW4NFK.wasm", include_bytes!("assets/natter_web_bg-XEJW4NFK.wasm").as_slice()),
]
