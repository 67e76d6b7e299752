//! Bounds on text a guest hands the host (log lines, rejection messages): a guest
//! must not make the host log, store or forward megabytes it chose.

/// Cut `message` to at most `max` bytes (on a character boundary), marking the cut
/// with how much went.
pub(crate) fn cut(message: &mut String, max: usize) {
    if message.len() <= max {
        return;
    }
    let dropped = message.len();
    let end = (0..=max)
        .rev()
        .find(|&i| message.is_char_boundary(i))
        .unwrap_or(0);
    message.truncate(end);
    message.push_str(&format!("… ({} more bytes cut)", dropped - end));
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_so() {
        let mut short = "fine".to_owned();
        cut(&mut short, 4);
        assert_eq!(short, "fine");
        let mut long = "ééééé".to_owned(); // 10 bytes
        cut(&mut long, 5);
        assert_eq!(long, "éé… (6 more bytes cut)");
    }
}
