"""The words the eval tests' tiny tokenizer and texts are made of."""

WORDS = ("the cat sat on the mat . a dog ran in the park . one two three four five six seven eight nine ten "
         "question answer yes no true false paris london rome red green blue 1 2 3 4 5 6 7 8 9 0 + - = ?")
