// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.
[
    ("index.html", include_bytes!("index.html").as_slice()),
    ("assets/main-5ZPMXWIN.css", include_bytes!("assets/main-5ZPMXWIN.css").as_slice()),
    ("assets/main-QYXVS52V.js", include_bytes!("assets/main-QYXVS52V.js").as_slice()),
    ("assets/natter_web_bg-LHZ77QQW.wasm", include_bytes!("assets/natter_web_bg-LHZ77QQW.wasm").as_slice()),
]
