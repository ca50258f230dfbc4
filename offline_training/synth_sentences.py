"""Sentence material for the synthetic corpus.

Emotional sentences are built from templates, an emotion LEXICON (adjectives and verb
phrases) and neutral topics, e.g. "I am livid about the train schedule". The lexicon is
partitioned across sessions (``lexicon_for_session``): a held-out session's emotion words
never occur in training, so a model must generalise the meaning of words (which a pretrained
text encoder can and Whisper's acoustic frames mostly cannot), not memorise their sound.

``NEUTRAL`` sentences carry no emotion (schedules, objects, facts); they are shared by all
sessions. ``EMOTIONAL`` (hand-written, emotion stated outright) is kept for reference and for
corpora built with ``held_out_words=False``.
"""

from __future__ import annotations

EMOTIONS = ("angry", "happy", "sad", "neutral")

# Chosen so that faster-whisper tiny.en mostly recognises them in espeak-ng speech (rare
# words such as "livid", "irate", "despondent" or "melancholy" were transcribed wrongly more
# often than not, which leaves ASR-text models nothing to learn from).
ADJECTIVES: dict[str, tuple[str, ...]] = {
    "angry": ("furious", "angry", "annoyed", "enraged", "infuriated", "disgusted", "mad",
              "fuming", "outraged", "frustrated"),
    "happy": ("delighted", "excited", "grateful", "cheerful", "overjoyed", "pleased", "happy",
              "glad", "joyful", "thankful"),
    "sad": ("heartbroken", "unhappy", "devastated", "depressed", "hopeless", "lonely",
            "crushed", "disappointed", "miserable", "hurt"),
}
VERBS: dict[str, tuple[str, ...]] = {
    "angry": ("hate", "am disgusted by", "am fed up with", "cannot stand", "despise",
              "am sick of", "detest"),
    "happy": ("love", "enjoy", "am grateful for", "am proud of", "am excited about",
              "cherish", "am thrilled about"),
    "sad": ("miss", "regret", "am heartbroken over", "grieve over", "weep over",
            "am devastated by", "feel empty about"),
}
ADJECTIVE_TEMPLATES = (
    "I am {word} about {topic}",
    "I feel so {word} about {topic}",
    "Honestly, I am {word} with {topic}",
    "We were all {word} after {topic}",
    "{Topic} made me {word}",
)
VERB_TEMPLATES = (
    "I {word} {topic}",
    "Honestly, I really {word} {topic}",
    "You know, I {word} {topic}",
)
TOPICS = (
    "the meeting on Tuesday", "the new schedule", "the quarterly report", "the train ride",
    "the phone call", "the weekend plans", "the move to the new office", "the test results",
    "the dinner with my family", "the letter from the bank", "the old car", "the trip to the coast",
    "the news from home", "the new neighbours", "the project deadline", "the garden",
    "the wedding", "the interview", "the hospital visit", "the football match",
)

EMOTIONAL: dict[str, tuple[str, ...]] = {
    "angry": (
        "I am furious with you right now",
        "This is completely unacceptable and I hate it",
        "Stop lying to me, I am sick of it",
        "How dare you do this to me again",
        "I am so angry I could scream",
        "Get out of my office immediately",
        "You ruined everything, you idiot",
        "This is outrageous and I will not accept it",
        "I hate waiting for this useless service",
        "Do not ever talk to me like that again",
        "You broke your promise and I am furious",
        "I am fed up with your stupid excuses",
        "That was a disgusting thing to do",
        "Shut up and listen to me for once",
        "I am absolutely livid about this mess",
        "You are the most annoying person I know",
        "This ridiculous company wasted my whole day",
        "Leave me alone, I am done with you",
        "I cannot stand your arrogance any longer",
        "Who the hell gave you permission to do that",
        "I demand to speak to your manager now",
        "Your behavior is infuriating and rude",
        "I will never forgive you for this insult",
        "Enough, I have had it with your nonsense",
    ),
    "happy": (
        "I am so happy to see you again",
        "This is the best day of my life",
        "What wonderful news, congratulations",
        "I love this, it is absolutely fantastic",
        "We won the game, I am thrilled",
        "Thank you so much, you made my day",
        "I am delighted with the results",
        "That is amazing, I can hardly believe it",
        "We are getting married next spring, how exciting",
        "I feel great and everything is perfect",
        "Your gift made me smile all day",
        "Hooray, we finally did it together",
        "I am really proud of you, well done",
        "What a lovely surprise, I adore it",
        "This party is so much fun",
        "I got the job, I am overjoyed",
        "It is a beautiful sunny day and I feel wonderful",
        "Our baby was born healthy, we are so grateful",
        "You are brilliant, this is excellent work",
        "I laughed so hard, that was hilarious",
        "We are going on holiday, yay",
        "I am excited to start this new adventure",
        "Everything worked out great, what a relief and a joy",
        "Best wishes, I am glad you are here",
    ),
    "sad": (
        "I miss her so much it hurts",
        "I feel lonely and nobody cares",
        "My dog died last night",
        "I am heartbroken and I cannot stop crying",
        "Everything is hopeless and I am so tired",
        "We lost the house, I am devastated",
        "I am sorry, I failed again",
        "He never came back and I am miserable",
        "It is a gloomy day and I feel empty",
        "I wish things had been different, I regret it",
        "Nobody remembered my birthday this year",
        "I lost my job and I do not know what to do",
        "The funeral was so painful and sad",
        "I feel depressed and alone tonight",
        "My best friend moved away forever",
        "I am grieving and my heart is broken",
        "All my hard work was for nothing",
        "I cried all night after the bad news",
        "She left me and I feel worthless",
        "It is so unfair, I am deeply unhappy",
        "I have nothing left to hope for",
        "I am sorry for your terrible loss",
        "We said goodbye for the last time",
        "My grandmother is very ill and I am afraid she will die",
    ),
}

NEUTRAL: tuple[str, ...] = (
    "The meeting starts at three on Tuesday",
    "Please put the files on the second shelf",
    "The train leaves from platform four",
    "I need to buy milk and bread",
    "The report has twelve pages",
    "Turn left at the next corner",
    "The office is on the fifth floor",
    "We will discuss the budget next week",
    "The package arrived this morning",
    "My phone number ends in seven",
    "The library closes at six",
    "Send me the document by email",
    "The car is parked outside the building",
    "The bus comes every twenty minutes",
    "I read the instructions on the box",
    "The window faces the street",
    "Our team has eight members",
    "The printer is next to the kitchen",
    "Please sign the form at the bottom",
    "The store opens at nine tomorrow",
    "I will call you after lunch",
    "The keys are on the table",
    "This road goes to the station",
    "The temperature is twenty degrees",
    "We moved the chairs to the other room",
    "The invoice number is on the top",
    "I walked to work this morning",
    "The shop sells paper and pens",
    "The lecture is in room two hundred",
    "Write your name on the first line",
    "The flight lands at noon",
    "There are four chairs in the kitchen",
    "The file is saved in the shared folder",
    "I will check the schedule later",
    "The green bottle is in the fridge",
    "He works at the bank downtown",
    "The box contains six cups",
    "We usually eat dinner at seven",
    "The documents are in the blue folder",
    "The garden is behind the house",
)


def lexicon_for_session(emotion: str, session_index: int, sessions: int
                        ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(adjectives, verb phrases) of ``emotion`` used by one session: every ``sessions``-th
    entry, so the sessions' emotion words are disjoint (all of them when sessions == 1)."""
    if sessions < 1 or not 0 <= session_index < sessions:
        raise ValueError(f"session_index {session_index} out of range for {sessions} sessions")
    adjectives = ADJECTIVES[emotion][session_index::sessions]
    verbs = VERBS[emotion][session_index::sessions]
    return adjectives, verbs
