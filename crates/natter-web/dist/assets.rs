// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.
[
    ("index.html", include_bytes!("index.html").as_slice()),
    ("assets/main-XEHN5N5C.css", include_bytes!("assets/main-XEHN5N5C.css").as_slice()),
    ("assets/main-ZBA3ZYO7.js", include_bytes!("assets/main-ZBA3ZYO7.js").as_slice()),
    ("assets/natter_web_bg-YKD4R5JI.wasm", include_bytes!("assets/natter_web_bg-YKD4R5JI.wasm").as_slice()),
]
