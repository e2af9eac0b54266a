//! Hostile YAML (alias expansion, deep nesting) is refused quickly, never hangs.

use scope_config::Config;

#[test]
fn alias_bomb_and_deep_nesting_are_diagnosed_quickly() {
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["b", "c", "d", "e", "f", "g", "h", "i", "j", "k"];
    let mut prev = "a";
    for n in names {
        bomb.push_str(&format!(
            "{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
        prev = n;
    }
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    for text in [bomb, deep] {
        let start = std::time::Instant::now();
        let (c, d) = Config::from_yaml_str(&text);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(c, Config::default());
        assert!(!d.is_empty());
    }
}
