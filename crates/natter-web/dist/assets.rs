// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.
[
    ("index.html", include_bytes!("index.html").as_slice()),
    ("assets/main-OQDQT4HT.css", include_bytes!("assets/main-OQDQT4HT.css").as_slice()),
    ("assets/main-RFGWPA45.js", include_bytes!("assets/main-RFGWPA45.js").as_slice()),
    ("assets/natter_web_bg-3IJN3KPG.wasm", include_bytes!("assets/natter_web_bg-3IJN3KPG.wasm").as_slice()),
]
