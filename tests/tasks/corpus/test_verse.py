from tasks.corpus.text.verse import verse_line_share, verse_lines


def test_lines_of_five_or_seven_characters_make_a_text_poem_shaped():
    assert verse_lines("春望\n杜甫\n国破山河在，城春草木深。") == ["春望", "杜甫", "国破山河在", "城春草木深"]
    assert verse_line_share("国破山河在，城春草木深。\n感时花溅泪，恨别鸟惊心。") == 1.0
    assert verse_line_share("春望\n杜甫\n国破山河在，城春草木深。") == 0.5
    assert verse_line_share("今天天气很好，我们去公园散步吧。") == 0.0
    assert verse_line_share("ROMEO: no Chinese here.") == 0.0
