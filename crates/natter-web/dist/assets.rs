// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.
[
    ("index.html", include_bytes!("index.html").as_slice()),
    ("assets/main-5ZPMXWIN.css", include_bytes!("assets/main-5ZPMXWIN.css").as_slice()),
<<<<<<< HEAD
    ("assets/main-ZGDN7GH7.js", include_bytes!("assets/main-ZGDN7GH7.js").as_slice()),
    ("assets/natter_web_bg-K7X2RGKW.wasm", include_bytes!("assets/natter_web_bg-K7X2RGKW.wasm").as_slice()),
=======
    ("assets/main-P732BRT4.js", include_bytes!("assets/main-P732BRT4.js").as_slice()),
    ("assets/natter_web_bg-UUIPAEMA.wasm", include_bytes!("assets/natter_web_bg-UUIPAEMA.wasm").as_slice()),
>>>>>>> web2
]
