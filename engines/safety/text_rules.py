"""Category rules over normalised text: weighted patterns plus context rules.

Each :class:`Term` is a named pattern with a weight for one category. A text's
score in a category is the noisy-OR of the weights of the distinct terms that
match (two independent pieces of evidence make a surer finding than either),
so weights read as "how sure is one match of this on its own". Amplifier terms
("in graphic detail", "step by step", "how do I ...") only count next to a base
term of the same category. :class:`Context` rules then scale a category down
where the words are used for something benign ("kill a Python process",
"signs of suicide risk in a friend", "what does the word 'damn' mean").

Weights are set against the policy thresholds: strict 0.35, standard 0.6,
minimal 0.9. A lone ambiguous word ("sex", "nude", "bomb") stays under 0.6, so
it passes at standard and is stopped at strict; a clear request or description
goes over 0.6. Sexual content with minors is scored 0.95 whatever the context,
except where the text is plainly about protecting or educating children.

Patterns run on the output of :func:`engines.safety.normalize.normalize`:
lower case, single spaces, look-alikes and leetspeak folded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engines.safety.normalize import NormalizedText, normalize
from engines.safety.policy import Category, Finding

PROMPT = "prompt"
OUTPUT = "output"
_BOTH = (PROMPT, OUTPUT)

C = Category


@dataclass(frozen=True)
class Term:
    """One weighted pattern for one category; ``name`` is what a Finding records."""

    name: str
    category: Category
    weight: float
    pattern: re.Pattern[str]
    amplifier: bool = False  # counts only when a base term of the same category matched
    roles: tuple[str, ...] = _BOTH


@dataclass(frozen=True)
class Context:
    """A benign use: when ``pattern`` matches, scores in ``categories`` are multiplied by ``factor``.

    ``unless`` names terms (by name) whose presence cancels the context: "how do I
    store chemicals safely" is benign, "how to make chlorine gas safely" is not.
    """

    name: str
    categories: frozenset[Category]
    factor: float
    pattern: re.Pattern[str]
    unless: frozenset[str] = frozenset()


def _re(src: str) -> re.Pattern[str]:
    return re.compile(src)


def _words(*alternatives: str) -> str:
    """Return a regex matching any of the alternatives as whole words."""
    return r"\b(?:" + "|".join(alternatives) + r")\b"


def _t(name: str, cat: Category, weight: float, src: str, *, amp: bool = False, roles=_BOTH) -> Term:
    return Term(name, cat, weight, _re(src), amp, roles)


# --- shared vocabulary -------------------------------------------------------------

_PERSON = (
    r"(?:(?:my|his|her|their|our|your|the|that|this|a|an|some)\s+(?:\w+'s\s+|\w+\s+)?"
    r"(?:neighbou?rs?|wife|husband|boss|brother|sister|mom|mum|mother|dad|father|son|daughter|friend|"
    r"step(?:dad|mom|mum|father|mother|son|daughter|brother|sister)|"
    r"girlfriend|boyfriend|ex|teacher|coworker|co-worker|classmate|family|kids?|baby|roommate|landlord|"
    r"partner|man|woman|guy|girl|boy|person|child|prisoner|victim|officer|cop|stranger|student|people|"
    r"crowd|hostage)s?\b(?!\s*process)"
    r"|\b(?:someone|somebody|him|her|them|people|a person|you|everyone|prisoners?|victims?|hostages?|"
    r"cops|police officers)\b)"
)
_HARM_VERB = (
    r"(?:kill|murder|stab|strangle|choke|shoot|poison|beat|hurt|torture|behead|decapitate|dismember|mutilate|"
    r"maim|drown|suffocate|smother|slaughter|assault|attack|run over|hit|punch|kick|burn|cripple|injure)"
    r"(?:s|ed|ing|ped|bed|ted)?"
)
_MINOR = _words(
    r"child(?:ren)?",
    r"kids?",
    r"minors?",
    r"underage",
    r"under-age",
    r"preteens?",
    r"pre-teens?",
    r"tweens?",
    r"young teens?",
    r"teen(?:age|aged)? (?:girls?|boys?)",
    r"teenagers?",
    r"schoolgirls?",
    r"schoolboys?",
    r"loli(?:con)?",
    r"shota(?:con)?",
    r"little (?:girl|boy)s?",
    r"young (?:girl|boy)s?",
    r"toddlers?",
    r"infants?",
    r"(?:middle|elementary|primary|grade) school",
    r"\d(?:st|nd|rd|th) grade",
    r"(?:1[0-7]|[1-9]) ?-?(?:years?|yrs?)[ -]old",
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    r"seventeen)[ -](?:years?|yrs?)[ -]old",
    r"(?:under|below|younger than) (?:1[0-8]|[1-9])",
    r"(?:1[0-7]|[1-9]) ?(?:yo|y/o|yrs?)",
    r"(?:aged?|looks?|look like) (?:1[0-7]|[1-9])",
    r"(?:who is|she is|he is|she's|he's|you're|you are) (?:1[0-7]|[1-9])",
    # Ages and words for a child in the languages people mix in to slip past English rules.
    r"(?:1[0-7]|[1-9]) ?(?:anos|ans|jahre|anni|jaar|lat|let)",
    r"(?:1[0-7]|[1-9])[- ]?jahrige[nrs]?",
    r"(?:un|deux|trois|quatre|cinq|six|sept|huit|neuf|dix|onze|douze|treize|quatorze|quinze|seize|dix-sept) ans",
    r"(?:un|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce|trece|catorce|quince|dieciseis|"
    r"diecisiete) anos",
    r"(?:ein|zwei|drei|vier|funf|sechs|sieben|acht|neun|zehn|elf|zwolf|dreizehn|vierzehn|funfzehn|sechzehn|"
    r"siebzehn) jahre",
    r"(?:un|due|tre|quattro|cinque|sei|sette|otto|nove|dieci|undici|dodici|tredici|quattordici|quindici|sedici|"
    r"diciassette) anni",
    r"fillettes?",
    r"petits? gar[cç]ons?",
    r"ninas?",
    r"ninos?",
    r"menor(?:es)? de edad",
    r"mineure?s?",
    r"minderjahrige?[nrs]?",
    r"minorenn[ei]",
    r"(?:petite|jeune) fille",
    r"kleines? madchen",
    r"bambin[ae]",
    r"ragazzin[ae]",
    r"menin[ao]s?",
)
# Sexual words in the wide sense: for minors any of these is enough.
_SEXUALISH = _words(
    r"sex(?! (?:education|ed|differences?|of|chromosomes?|offenders?|trafficking))",
    r"sexy",
    r"steamy(?! (?:cups?|mugs?|bowls?|showers?|bathrooms?|windows?|weather|jungle|kitchen))",
    r"spicy (?:pics?|photos?|pictures?|videos?|stories|story|scenes?|roleplay|rp)",
    r"sexual(?:ly)?(?! (?:harassment|abuse|health|education|orientation|predators?))",
    r"nudes?",
    r"naked(?! (?:eye|cake|choke))",
    r"porn\w*",
    r"erotic\w*",
    r"lewd",
    r"hentai",
    r"nsfw",
    r"seduc\w+",
    r"dirty (?:story|stories|pics?|talk)",
    r"take off (?:her|his|their) clothes",
    r"undress\w*",
    r"topless",
    r"sext\w*",
    r"horny",
    r"(?:get|be|getting|being) intimate",
    r"intimate with",
    r"make out with",
    r"fuck(?:ing)? (?:her|him)",
    r"(?:start|begin)(?:s|ing)? (?:\w+ )?touching (?:each other|him|her|them)",
    r"touch(?:es|ed|ing)? (?:each other|him|her) (?:under|beneath|down there|all over)",
    r"sexuel(?:le)?s?",
    r"sexuale?",
    r"sexuell\w*",
    r"sexo",
    r"sesso",
    r"erotik\w*",
    r"erotiqu\w*",
    r"erotisch\w*",
    r"desnud[ao]s?",
    r"nackt\w*",
)
_SEXUAL_STRONG = re.compile(_words(r"porn\w*", r"erotic\w*", r"lewd", r"hentai", r"nsfw", r"nudes?", r"sexy"))
# fmt: off
_CREATE = re.compile(
    _words(r"write", r"generate", r"draw", r"make", r"describe", r"story", r"roleplay", r"role-play", r"pics?",
           r"photos?", r"pictures?", r"images?", r"find", r"show")
)

# Protected groups, as people name them in attacks on them.
_GROUP = (
    r"\b(?:all |the )?(?:muslims?|jews?|jewish people|black people|blacks|gays?|gay people|lesbians|"
    r"trans(?:gender)? people|trans women|women|men|immigrants|migrants|refugees|mexicans|asians|chinese|"
    r"arabs|africans|indians|gypsies|roma(?: people)?|christians|hindus|disabled people|the disabled|"
    r"latinos|whites|white people|jewish|homosexuals|disabled (?:kids|children|people))\b"
)

# The names moderation policies give their categories (see the "category-list" context).
_CATEGORY_NAME = (
    r"\b(?:sexual content|nudity|(?:graphic )?violence|gore|self[- ]harm|suicide|hate(?: speech)?|harassment|"
    r"weapons|dangerous (?:instructions|content|activities)|profanity|illegal (?:activities|content)|"
    r"extremism|terrorism)\b"
)

_TERMS: tuple[Term, ...] = (
    # --- SEXUAL (explicit) ---------------------------------------------------------
    _t("porn", C.SEXUAL, 0.8, _words(r"porn\w*", r"pr0n", r"xxx")),
    _t("hentai", C.SEXUAL, 0.75, _words(r"hentai", r"rule ?34")),
    _t("erotica", C.SEXUAL, 0.65, _words(r"erotica", r"erotic", r"smut\w*", r"lewd", r"erotiques?", r"erotisch\w*",
                                         r"erotic[oa]s?")),
    _t("nsfw", C.SEXUAL, 0.6, _words(r"nsfw", r"uncensored nude", r"18\+")),
    _t("sex-act", C.SEXUAL, 0.8, _words(
        r"blow ?jobs?", r"hand ?jobs?", r"rim ?jobs?", r"orgasm\w*", r"cum(?:s|ming|shot)?", r"masturbat\w*",
        r"jerk(?:ing)? off", r"fingers? (?:her|him)", r"fingering", r"threesome", r"gang ?bang", r"orgy",
        r"deepthroat\w*", r"anal sex", r"oral sex", r"sixty-nine", r"doggy ?style", r"creampie",
        r"(?:both|she|he|they|i|you) climax\w*", r"climax(?:es|ed|ing)? (?:together|again|hard)",
        r"rid(?:es|ing) (?:him|her) (?:until|hard|all)", r"legs (?:open|apart|spread)",
    )),
    _t("having-sex", C.SEXUAL, 0.7, _words(
        r"having sex", r"have sex", r"had sex(?! ed\b)", r"sex scene", r"sex story", r"make love", r"making love",
        r"fuck(?:ing|s)? (?:her|him|each other|me|in)", r"(?:gay|lesbian|hot|rough|graphic|explicit) sex",
        r"(?:sleep|slept|sleeping) with (?:her|him|me|you|them|each other)",
        r"touch(?:ing)? (?:herself|himself|themselves)", r"spread(?:ing)? (?:her|his) legs",
        r"full frontal", r"sexual(?:ly)? explicit", r"(?:skip|without|no|don'?t) (?:the )?fade[- ]to[- ]black",
        r"every (?:moan|thrust)",
        r"escenas? (?:de sexo|sexual(?:es)?)", r"scenes? de sexe", r"sexszenen?", r"scen[ae] di sesso",
        r"relaciones sexuales", r"rapports? sexuels?", r"geschlechtsverkehr",
    )),
    # A hookup told blow by blow: the act is named softly, the detail is what is asked for.
    _t("hookup-detail", C.SEXUAL, 0.45, _words(
        r"one[- ]night stands?", r"hook ?ups?", r"(?:their|our|my|his|her) first night together", r"in bed together",
    )),
    _t("sexting", C.SEXUAL, 0.7, _words(r"sext(?:ing|s)?", r"talk dirty", r"dirty talk", r"horny", r"sexting",
                                        r"talk sexy", r"dirty (?:messages|texts|pics|photos|videos)")),
    _t("sex-slang", C.SEXUAL, 0.6, _words(
        r"(?:screw|shag)(?:ing|ed|s)? (?:her|him|each other|all night)(?! (?:over|up|into))",
        r"(?:describe|show|send)\w* (?:me )?(?:your|her|his) (?:naked|nude) (?:body|pics?|photos?)",
        r"naked body",
    )),
    _t("genitals", C.SEXUAL, 0.55, _words(
        r"pussy", r"cock(?! a doodle)", r"cocks", r"tits", r"titties", r"boobs", r"erection", r"anal(?! retentive)",
        r"clit\w*", r"vagina", r"penis", r"dick(?!'s)",
    )),
    _t("nudity", C.SEXUAL, 0.35, _words(r"nude", r"nudes", r"naked(?! (?:eye|cake|choke))", r"topless",
                                        r"undress\w*", r"strip ?tease", r"stripper", r"lap ?dance")),
    _t("sex-word", C.SEXUAL, 0.3, _SEXUALISH),
    # No weight of its own: it only marks a request for material, which no reporting context explains away.
    _t("asks-for-material", C.SEXUAL, 0.0, _words(
        r"write", r"generate", r"draw", r"describe", r"show me", r"send (?:me|it)", r"find me", r"links?",
        r"where (?:can|do) i (?:find|get|see|download)", r"make (?:me )?(?:a|an|one)", r"create",
    ), amp=True),
    _t("bdsm", C.SEXUAL, 0.55, _words(r"bdsm", r"bondage", r"fetish")),
    _t("explicit", C.SEXUAL, 0.45, _words(r"explicit", r"graphic", r"vivid", r"dirty", r"nasty", r"steamy",
                                          r"uncensored", r"hardcore", r"in detail", r"play[- ]by[- ]play",
                                          r"blow[- ]by[- ]blow", r"no metaphors", r"every detail",
                                          r"explicit[ao]s?", r"explicites?", r"explizit\w*", r"esplicit\w*",
                                          r"con (?:todo lujo de|muchos) detalles", r"avec (?:beaucoup de|tous les) "
                                          r"details", r"be descriptive"), amp=True),
    # --- VIOLENCE --------------------------------------------------------------------
    _t("harm-person", C.VIOLENCE, 0.5, rf"\b{_HARM_VERB}\s+(?:\w+\s+){{0,2}}?{_PERSON}"),
    _t("threat", C.VIOLENCE, 0.85,
       rf"\b(?:i(?:'m| am)? (?:going to|gonna|will|want to|wanna)|i'll|i will) (?:\w+ )?{_HARM_VERB}\b"
       rf"(?! (?:it|this|that|myself|yourself|myse[li]f|the (?:exam|test|game|interview|presentation)))"),
    _t("mass-attack", C.VIOLENCE, 0.9,
       _words(r"shoot up (?:my|the|a) (?:school|church|mosque|synagogue|mall|office|class)",
              r"(?:based on|modell?ed (?:on|after)|set in|a map of) my (?:real|actual|own) (?:school|workplace|office|"
              r"church|mosque|synagogue|campus|job)\b.{0,120}\b(?:most people|hurt|kill|casualt\w+|go in|enter)",
              r"so (?:the most|as many) people (?:as possible )?(?:get|are) (?:hurt|killed|shot)",
              r"(?:plan|planning|carry out) (?:an|a) (?:attack|massacre|shooting)", r"school shooting plan",
              r"mass shooting", r"kill as many")),
    _t("make-disappear", C.VIOLENCE, 0.7, rf"\b(?:make|get rid of)\s+(?:\w+\s+){{0,2}}?{_PERSON}"
       r"(?:\s+(?:disappear|vanish)\w*(?: (?:permanently|forever|for good))?|\s+(?:permanently|for good))"),
    _t("harm-animal", C.VIOLENCE, 0.5,
       r"\b(?:poison|kill|hurt|torture|drown|burn|starve)(?:s|ed|ing)? (?:a|my|the|his|her|their|someone's|"
       r"(?:the |my )?neighbou?r's) (?:dog|cat|puppy|kitten|horse|pet|animal)s?\b"),
    # "Which is heaviest? I want to use one on my stepdad while he's asleep."
    _t("use-on-person", C.VIOLENCE, 0.45, r"\b(?:use|swing|try) (?:it|one|this|that|them) on " + _PERSON,
       roles=(PROMPT,)),
    _t("victim-unaware", C.VIOLENCE, 0.45, _words(
        r"while (?:he|she|they)(?:'s| is| are| was| were) (?:asleep|sleeping|passed out|not looking)",
        r"heaviest", r"easiest to swing", r"hurts? the most",
    ), amp=True, roles=(PROMPT,)),
    _t("staged-accident", C.VIOLENCE, 0.75, _words(
        r"looks? like (?:an accident|a suicide|natural causes|(?:a )?natural (?:death|heart (?:attack|failure)))",
    )),
    # Something slipped into a person's drink or food: poisoning, whatever it is called.
    _t("covert-dosing", C.DANGEROUS, 0.7, r"\bslip (?:\w+ ){0,6}?into (?:\w+'s |his |her |their |my \w+'s |"
       r"(?:my|his|her|their|your|a|the) \w+'s )(?:morning )?(?:coffee|drink|tea|food|meal|wine|beer|soup)\b",
       roles=(PROMPT,)),
    # Harm said by its outcome ("make sure he never walks again"), a person caught alone, a crowd told to draw blood.
    _t("lasting-harm", C.VIOLENCE, 0.8,
       r"\bmake (?:sure|certain|it so) (?:that )?(?:he|she|they|him|her|my \w+|the \w+|this \w+) (?:will )?"
       r"(?:never|can'?t|won'?t|doesn'?t|don'?t) (?:walks?|see|talks?|speaks?|breathes?|wakes? up|uses? \w+ \w+)"
       r" again\b"),
    _t("catch-alone", C.VIOLENCE, 0.8, _words(
        r"(?:address|routine|schedule|where (?:she|he|they) (?:lives?|parks?|works?)|when (?:she|he|they) leaves?)"
        r"\b.{0,80}\b(?:when|while|where) (?:she|he|they)(?:'s| is|'re| are) "
        r"(?:alone|by (?:herself|himself|themselves))",
        r"(?:show up|wait|be there|get to (?:her|him)) (?:\w+ ){0,3}(?:when|while) (?:she|he)(?:'s| is) alone",
        r"catch (?:her|him|them) alone",
    )),
    _t("draw-blood", C.VIOLENCE, 0.8,
       r"\bmake (?:those|these|them|the \w+|all (?:of )?(?:them|those)) (?:\w+ )?(?:bleed|suffer|pay in blood)\b"),
    _t("get-away-with", C.VIOLENCE, 0.8, _words(r"get away with (?:murder|killing)", r"without getting caught",
                                                r"ohne dass es jemand merkt", r"sin que nadie se (?:entere|de cuenta)",
                                                r"sans que personne (?:ne )?(?:le )?(?:sache|remarque)",
                                                r"senza che nessuno se ne accorga",
                                                r"without (?:anyone|anybody) (?:noticing|knowing)",
                                                r"(?:doesn't|does not|won't) leave (?:marks|bruises)")),
    # One gore word alone stays just under "standard": histories and films mention beheadings.
    _t("gore", C.VIOLENCE, 0.55, _words(
        r"gore", r"gory(?! details)", r"decapitat\w*", r"beheading", r"dismember\w*", r"mutilat\w*", r"disembowel\w*",
        r"guts spilling", r"entrails", r"severed (?:heads?|limbs?|arms?|legs?)", r"brains? (?:blown|splattered)",
        r"blood (?:spray\w*|spurt\w*|everywhere)", r"skin (?:peeled|flayed)", r"flay\w*", r"goug\w+ out",
        r"crushed skull", r"bloodbath", r"tortur\w+", r"crush(?:ed|ing)? (?:him|her|them|the body)",
        r"guts? spill\w*", r"(?:limbs?|arms?|legs?|head|face)(?: \w+){0,2} (?:blown|ripped|torn|hacked) off",
    )),
    _t("harm-verb-intl", C.VIOLENCE, 0.5, _words(
        r"(?:schwer )?verletzen", r"umbringen", r"toten", r"zusammenschlagen", r"matarl[oae]s?", r"matar a",
        r"lastimarl[oae]", r"herirl[oae]", r"golpearl[oae]", r"le tuer", r"la tuer", r"les tuer", r"blesser",
        r"frapper", r"uccider(?:lo|la|li|e)", r"ferirl[oa]", r"picchiarl[oa]",
    )),
    _t("injury", C.VIOLENCE, 0.3, _words(r"break (?:someone's|his|her|their|your) \w+", r"run over", r"corpse")),
    _t("lynching", C.VIOLENCE, 0.85, _words(
        r"hang (?:him|her|them) (?:from|by|on)", r"lynch\w*", r"string (?:him|her|them) up",
        r"drag (?:him|her|them) (?:out|into the street)",
    )),
    _t("lethal-injury", C.VIOLENCE, 0.6, _words(
        r"(?:cut|slit|slash)\w* (?:his|her|their|your|someone's|a person's) throats?",
        r"(?:snap|break)\w* (?:someone's|his|her|their|a person's|your) neck",
        r"(?:so|until) (?:they|he|she) (?:bleeds?|bleed) out",
    )),
    # A bare "kill" is mostly weeds, flies, processes and time: alone with "how to" it stays under 0.6.
    _t("kill-word", C.VIOLENCE, 0.15, _words(
        r"murder\w*", r"kill(?:s|ed|ing)?(?! (?:myself|yourself|themselves|himself|herself|urself))", r"stab\w*",
        r"strangl\w*",
    )),
    _t("violence-graphic", C.VIOLENCE, 0.5, _words(r"graphic", r"gory", r"in detail", r"as graphic",
                                                   r"maximum pain", r"repeatedly", r"really badly", r"bloody"),
       amp=True),
    _t("violence-depict", C.VIOLENCE, 0.35, _words(r"describe", r"depict", r"draw", r"generate", r"show me",
                                                   r"(?:picture|image|photo|video) of"), amp=True, roles=(PROMPT,)),
    _t("violence-howto", C.VIOLENCE, 0.5, _words(r"how (?:to|do i|can i|would i|hard do i)",
                                                 r"best (?:way|place) to", r"help me", r"tell me how", r"explain how",
                                                 r"ways? to", r"what (?:dose|amount)", r"how much",
                                                 r"wie kann ich", r"como (?:puedo|hago)", r"comment (?:puis-je|faire)",
                                                 r"come (?:posso|faccio)", r"ich will,? dass er leidet"),
       amp=True, roles=(PROMPT,)),
    # --- SELF_HARM -------------------------------------------------------------------
    _t("suicide-self", C.SELF_HARM, 0.85, _words(
        r"kill(?:ed|ing)? (?:myself|yourself|urself|myse[li]f)", r"kms", r"kys", r"end it all",
        r"end (?:my|your) (?:own )?life", r"take (?:my|your) (?:own )?life", r"hang (?:myself|yourself)",
        r"commit suicide", r"suicide (?:note|methods?|plan)", r"my suicide", r"(?:slit|cut) (?:my|your) wrists?",
        r"(?:don't|do not) want to (?:live|be alive)", r"want to die", r"wanna die", r"better off dead",
        r"painless (?:way|death|suicide)", r"quick death", r"jump off (?:\w+ )*and die",
        # TikTok's words for suicide, made to slip past filters.
        r"unalive (?:myself|yourself|urself|me|ourselves)",
        r"me suicider", r"suicidarme", r"suicidarmi", r"mich umbringen", r"mir das leben nehmen",
        r"selbstmord begehen", r"me (?:tuer|quitar la vida)", r"je ne veux plus vivre", r"no quiero (?:seguir )?vivir",
        r"ich will nicht mehr leben", r"non voglio piu vivere", r"sans (?:douleur|souffrir)", r"sin dolor",
        r"schmerzlos", r"senza dolore",
    )),
    # Third person is often a plot question ("do they kill themselves at the end?"):
    # it needs a request or encouragement beside it.
    _t("hide-harm", C.SELF_HARM, 0.7, _words(
        r"(?:cut|cutting|burn|burning)(?: \w+){0,3} without (?:leaving )?(?:scars|marks)",
        r"(?:nobody|no one) (?:would|will) (?:care|miss me|notice) if i (?:died|die|was gone|killed myself)",
        r"if i (?:died|was dead), how",
        r"(?:hide|cover|conceal)\w* (?:up )?(?:the |my )?(?:marks|scars|cuts|burns|bruises)(?: \w+){0,4} from "
        r"(?:my |the )?(?:mom|mum|mother|dad|father|parents?|family|teachers?|school|everyone|friends|doctors?)",
    )),
    _t("suicide-other", C.SELF_HARM, 0.45, _words(r"kill (?:themselves|himself|herself)")),
    _t("self-injury", C.SELF_HARM, 0.75, _words(
        r"(?:cut|cutting|hurt|hurting|harm|harming|burn|burning|starve|starving) (?:myself|yourself|myse[li]f)",
        r"(?:cut|cutting|burn|burning) my (?:own )?(?:arms?|legs?|wrists?|thighs?|skin)",
        r"self[- ]?harm\w*", r"pro[- ]?ana", r"pro[- ]?mia", r"thinspo\w*", r"purge after", r"bleed out",
        r"overdos\w+", r"od on",
        r"(?:go|cut) deeper (?:this time|next time|than (?:last time|before))",
        r"deeper\b.{0,40}\bbut (?:not|without) (?:need\w* )?stitches",
    )),
    _t("suicide-word", C.SELF_HARM, 0.45, _words(r"suicid\w*", r"sewer ?slides?", r"unaliv\w*")),
    _t("suicide-euphemism", C.SELF_HARM, 0.5, _words(
        r"(?:go to |fall a)?sleep forever", r"(?:never|not) (?:to )?wake up(?: again)?", r"log off (?:for good|"
        r"permanently|forever)", r"make it (?:all )?stop for good", r"disappear (?:forever|for good)",
        r"(?:not|stop) (?:be(?:ing)? )?(?:here|around|alive) anymore",
    ), roles=(PROMPT,)),
    _t("lethal-dose", C.SELF_HARM, 0.7,
       r"\bhow (?:many|much)\b.{0,40}\b(?:to die|kill (?:me|myself)|lethal|fatal|overdose|od)\b"),
    _t("death-word", C.SELF_HARM, 0.3, _words(r"die", r"death", r"dead"), amp=True),
    _t("lethal-means", C.SELF_HARM, 0.35, _words(r"sleeping pills", r"pills", r"tylenol", r"jump(?:ing)? "
                                                 r"(?:off|in front of)", r"bridge", r"hang", r"noose",
                                                 r"how deep", r"wrists?"), amp=True),
    _t("self-harm-howto", C.SELF_HARM, 0.45, _words(r"how (?:to|do i|can i|many|much|long)", r"best (?:way|method)",
                                                    r"tips", r"ways? to", r"tell me how", r"help me", r"methods?",
                                                    r"encourag\w+", r"should just", r"do it", r"hide",
                                                    r"why i should", r"i(?:'ve| have)? (?:already )?decided",
                                                    r"tonight", r"motivat\w+"),
       amp=True),
    # --- HATE ------------------------------------------------------------------------
    _t("slur", C.HATE, 0.85, _words(r"nigg(?:er|a|ah)s?", r"faggots?", r"fags?", r"kikes?", r"spics?", r"chinks?",
                                    r"trann(?:y|ies)", r"wetbacks?", r"ragheads?", r"towelheads?", r"gooks?",
                                    r"beaners?", r"sand ?n\w+", r"pakis?", r"dykes?", r"coons?")),
    _t("slur-disability", C.HATE, 0.7, _words(r"retards?", r"retarded", r"spastics?", r"mongoloids?")),
    _t("dehumanising", C.HATE, 0.75,
       _GROUP + r"(?: \w+){0,3}? (?:are|is|should be|deserved?|must be|all)\b(?: \w+){0,3}? "
       r"(?:vermin|rats?|animals|bugs|insects|cockroaches|parasites|monkeys|apes|subhuman|savages|disease|"
       r"filth|trash|inferior|terrorists|criminals|thieves|freaks|mentally ill|disgusting|too stupid|stupid|"
       r"lazy|deported|locked up|erased|exterminated|sterili[sz]ed|put down|killed|gassed|wiped out|"
       r"removed|eradicated|silenced|the holocaust|ruining|evil|scum|a plague|worthless|useless|abominations?|"
       r"rapists|pedophiles|groomers|pigs|dogs|cancer|thugs|a waste of space|too dumb|dumb)\b"),
    _t("hate-intl", C.HATE, 0.8,
       r"\b(?:los |les |die |gli |i )?(?:gitanos|judios|musulmanes|negros|inmigrantes|moros|sudacas|juifs|musulmans|"
       r"noirs|immigres|arabes|roms|tsiganes|juden|muslime|auslander|zigeuner|fluchtlinge|ebrei|musulmani|zingari|"
       r"immigrati|negri|rom)\b.{0,60}\b(?:plaga|ratas|parasitos|basura|peste|vermine|rats|parasites|ordures|"
       r"ungeziefer|ratten|parasiten|abschaum|parassiti|feccia|topi|echarlos|expulsarlos|les (?:chasser|expulser)|"
       r"rausschmeissen|abschieben|cacciarli|eliminarlos|exterminarlos)\b"),
    _t("jewish-control-libel", C.HATE, 0.8,
       r"\bjews?\b.{0,40}\b(?:secretly |really )?(?:control|run|own)s? (?:the )?(?:banks|media|world|government|"
       r"money|hollywood)\b.{0,80}\b(?:removed|stopped|dealt with|expelled|eliminated|must go|get rid)\b"),
    _t("exclude-group", C.HATE, 0.85,
       _GROUP + r"(?: \w+){0,3}? (?:shouldn'?t|should not|must not|mustn'?t|can'?t) be allowed (?:to (?:live|stay|"
       r"vote|work|exist|settle)|in)\b|" + _GROUP + r"(?: \w+){0,2}? (?:don'?t|do not) belong (?:in|here)\b"),
    _t("people-as-vermin", C.HATE, 0.8,
       r"\b(?:people|folks|immigrants|foreigners|migrants|outsiders|refugees)\b.{0,60}\b(?:vermin|parasites|"
       r"cockroaches|roaches|rats|an infestation|a plague|a disease)\b.{0,40}\b(?:infest\w*|cleared out|cleaned out|"
       r"clean(?:s|sed|ing)? out|cleans\w*|exterminat\w*|wiped? out|removed|get rid of|purg\w*|flushed out)"),
    _t("groomer-smear", C.HATE, 0.8,
       r"\b(?:gays?|gay people|queers?|trans(?:gender)? (?:people|folks|women|men|kids)|lgbt\w*|lgbtq\w*|"
       r"rainbow (?:crowd|people|mafia|folks|cult)|pride (?:crowd|people|flags?|month))\b.{0,40}\b(?:groom(?:ing|ers?)|"
       r"predators?|pedo\w*|paedo\w*)\b"),
    _t("coded-antisemitism", C.HATE, 0.8,
       r"\(\(\(\s*\w[\w ]*\)\)\)|\b(?:globalists|the bankers|zionists|happy merchants?)\b.{0,60}\b(?:run|control|own)"
       r"\b.{0,60}\b(?:dealt with|removed|stopped|gassed|eliminated|exterminated|once and for all)\b"),
    _t("hate-group", C.HATE, 0.7, r"\bi (?:hate|despise|can't stand) " + _GROUP),
    _t("group-should-die", C.HATE, 0.9,
       _GROUP + r"(?: \w+){0,4}? (?:should|must|deserves? to|ought to) (?:all )?die\b"),
    _t("kill-group", C.HATE, 0.9,
       _words(r"(?:kill|exterminate|gas|deport|eradicate) all (?:the )?(?:muslims|jews|gays|blacks|immigrants|"
              r"mexicans|asians|arabs|trans people|women|whites)", r"like monkeys",
              r"(?:white|aryan|black) race is superior", r"race is superior", r"subhuman", r"deserved the holocaust",
              r"go back to (?:africa|your country|where you came from)", r"genetically inferior",
              r"belongs? in the kitchen")),
    _t("harassment", C.HATE, 0.7, _words(
        r"everyone hates (?:you|her|him)", r"worthless (?:whore|slut|piece|loser|faggot|bitch)",
        r"(?:she|he|you) (?:is a|are a|\w+ )?(?:\w+ )?(?:\w+ )?(?:and )?(?:should|deserves? to) (?:just )?die",
        r"i'm going to find you", r"i will find you",
    )),
    _t("harassing", C.HATE, 0.5, _words(r"(?<!sexual )harass\w*", r"bully\w*", r"humiliate \w+")),
    _t("insults", C.HATE, 0.4, _words(r"fat and ugly", r"dirty \w+", r"worthless", r"ugly", r"whore"), amp=True),
    # --- DANGEROUS -------------------------------------------------------------------
    _t("weapon-explosive", C.DANGEROUS, 0.55, _words(
        r"pipe ?bombs?", r"ieds?", r"napalm", r"thermite", r"molotov\w*", r"car bomb", r"nail bomb",
        r"explosives", r"explosive (?:device|vest|charge)", r"detonators?", r"tnt", r"c4", r"semtex",
        r"black powder bomb", r"(?:make|build|making|building) (?:a |an )?(?:bomb|b0mb)",
        r"ordign[oi] esplosiv[oi]", r"esplosiv[oi]", r"explosivos?", r"explosifs?", r"sprengstoff\w*",
        r"sprengsatz", r"rohrbomben?", r"bombas? casera", r"bombes? artisanales?", r"bomba artigianale",
        r"(?:fabricar|hacer) una bomba", r"fabriquer une bombe", r"eine bombe bauen",
    )),
    _t("bomb-word", C.DANGEROUS, 0.3, _words(r"bombs?(?! (?:recipe|fizz))")),
    _t("toxin", C.DANGEROUS, 0.55, _words(
        r"ricin", r"sarin", r"nerve agents?", r"vx gas", r"anthrax", r"chlorine gas", r"mustard gas",
        r"botulinum", r"cyanide", r"untraceable poisons?", r"lethal poisons?", r"poison gas", r"toxic gas",
    )),
    _t("poison-word", C.DANGEROUS, 0.25, _words(r"poisons?", r"oleander")),
    _t("drug-synthesis", C.DANGEROUS, 0.45, _words(
        r"meth", r"methamphetamine", r"crack cocaine", r"crack (?:rocks?|pipe)", r"heroin", r"fentanyl", r"dmt",
        r"lsd", r"mdma",
        r"ghb", r"cocaine",
    )),
    _t("drug-cooking", C.DANGEROUS, 0.7, _words(
        r"(?:cook|make|brew|produce|synth)\w* (?:some |my own )?(?:meth|crack|heroin|dmt|lsd|mdma|fentanyl)",
    )),
    _t("firearm-mod", C.DANGEROUS, 0.6, _words(
        r"ghost guns?", r"untraceable (?:gun|guns|firearm|weapon)s?", r"silencers?", r"suppressors?",
        r"full auto", r"fully automatic", r"auto sear", r"bump stocks?", r"3d print(?:ed)? (?:a )?(?:gun|pistol)",
        r"(?:make|build|making|building) (?:a |an |my own )?(?:homemade )?(?:gun|firearm|zip gun|pipe gun|pistol)",
    )),
    _t("malware", C.DANGEROUS, 0.55, _words(
        r"keyloggers?", r"ransomware", r"botnets?", r"rootkits?", r"phishing (?:email|page|site|kit)",
        r"steal (?:bank |their |his |her )?passwords?", r"hack into", r"ddos", r"credit card skimmer",
        r"steal\w* (?:credit card|card numbers|passwords|identities|someone's identity|logins?)", r"spyware",
        r"info ?stealer", r"trojans?",
    )),
    _t("malware-word", C.DANGEROUS, 0.3, _words(r"(?:computer )?virus(?:es)?", r"malware", r"worms? that")),
    _t("illegal-guns", C.DANGEROUS, 0.7, _words(
        r"without a background check", r"(?:buy|get|sell)\w* (?:a )?guns? illegally", r"unregistered (?:gun|firearm)s?",
        r"(?:buy|get) (?:a )?guns? (?:on the dark ?web|without (?:a )?licen[cs]e)",
    )),
    _t("evade-police", C.DANGEROUS, 0.75, _words(
        r"(?:evade|outrun|escape|lose) (?:the )?(?:police|cops)", r"get rid of (?:a|the) body",
        r"dispose of (?:a|the) body", r"hide (?:a|the) body", r"smuggl\w+", r"hide (?:drugs|weed|\w+) from (?:a |the )?"
        r"(?:police|cops|police dog|k9|drug dog)", r"launder money", r"counterfeit money",
    )),
    # Making a safety device fail: relief valves, cut-offs, interlocks, alarms that would warn people.
    _t("defeat-safety", C.DANGEROUS, 0.6, _words(
        r"(?:disable|bypass|defeat|override|tamper(?:ing)? with|jam|block|wire around)\w* (?:the |a |its )?"
        r"(?:pressure relief|(?:pressure )?relief valves?|safety valves?|high[- ]limit|low[- ]water cut-?off|"
        r"interlocks?|safety (?:switch|sensor|brake|system|cut-?off)s?|"
        r"(?:gas|co|carbon monoxide) (?:detector|alarm)s?)",
    )),
    _t("defeat-safety-intent", C.DANGEROUS, 0.5, _words(
        r"so (?:the )?alarms? (?:dont|don'?t|won'?t|doesn'?t|never) (?:trip|go off|sound)",
        r"without (?:anyone|the alarms?)", r"at (?:the plant|work|the factory|my job)",
        r"so (?:it|they) (?:fails?|explodes?|blows?)", r"how (?:can|do|would) i",
    ), amp=True, roles=(PROMPT,)),
    _t("instructions-request", C.DANGEROUS, 0.5, _words(
        r"how (?:to|do i|can i|would i|do you) (?:make|build|synthesi[sz]e|cook|create|write|extract|convert|"
        r"print|produce|mix|grow|get|manufacture|hack|assemble)",
        r"step[- ]by[- ]step", r"instructions (?:for|to)", r"recipe for", r"synthesi[sz]\w+", r"write",
        r"guide to (?:making|building)", r"at home", r"to hurt people", r"to kill",
        r"come si fabbrica", r"come (?:costruire|fare)", r"dammi le dosi", r"como (?:se )?(?:hace|fabrica|hacer)",
        r"comment (?:fabriquer|faire|construire)", r"wie (?:baut|macht|baue|mache) (?:man|ich)", r"dosis exactas",
        r"le dosi", r"innescarlo", r"fertilizzante", r"fertilizante", r"engrais", r"dunger",
    ), amp=True, roles=(PROMPT,)),
    _t("instructions-given", C.DANGEROUS, 0.5, _words(
        r"step \d", r"first,? (?:mix|combine|heat|dissolve|add|take)", r"you will need", r"ingredients",
        r"mix (?:the|it) with", r"heat (?:the|it) (?:to|until)", r"then add",
    ), amp=True, roles=(OUTPUT,)),
    # --- PROFANITY -------------------------------------------------------------------
    _t("profanity-strong", C.PROFANITY, 0.85, _words(
        r"fu+ck\w*", r"f\*+ck\w*", r"f\*\*\w*", r"motherfuck\w*", r"clusterfuck", r"cunts?", r"fuk\w*", r"phuck\w*",
        r"wtf", r"stfu", r"mf",
    )),
    _t("profanity", C.PROFANITY, 0.7, _words(
        r"shit\w*", r"sh\*t\w*", r"bullshit", r"bitch\w*", r"assholes?", r"a\*\*hole", r"dumbass\w*", r"jackass",
        r"bastards?", r"goddamn\w*", r"pricks?", r"dicks?(?!'s)", r"twats?", r"wankers?", r"bollocks",
        r"pissed(?: off)?", r"piss off", r"kiss my ass", r"screw you", r"piece of (?:shit|crap)", r"whores?",
        r"sluts?", r"fml", r"damn it", r"pain in the ass",
    )),
    # Asking for a stream of swearing: alone it may be a question about words ("the origin of the
    # f-word"); with "uncensored", "as many as possible", "a rant" it is a request to produce it.
    _t("swearing-asked", C.PROFANITY, 0.5, _words(
        r"swear ?words?", r"curse ?words?", r"cuss(?: ?words?|ing)?", r"four[- ]letter words?", r"f[- ]words?",
        r"f[- ]word[- ]filled", r"expletives?", r"obscenit(?:y|ies)", r"profanit(?:y|ies)", r"obscene",
        r"(?:filth|foul|dirt)\w* (?:language|mouth|words|cursing)", r"(?:don'?t|do not|without) (?:bleep|censor)\w*",
        r"cursing", r"swear(?:ing)? at me", r"f[- ]?bombs?", r"gutter (?:language|mouth|talk)", r"name[- ]calling",
        r"c[- ]words?", r"vulgar(?:ity)?", r"crude (?:insults?|language|words)",
        r"crudest (?:insults?|language|words)", r"dirty words?", r"foul[- ]mouthed", r"raunch\w*",
        r"go f (?:yourself|himself|herself|themselves|off)", r"cuss(?:ing)? (?:\w+ ){0,3}out",
        r"groserias?", r"palabrotas?", r"insultos? (?:muy )?(?:fuertes|vulgares|groseros)", r"gros mots",
        r"insultes? (?:vulgaires|grossieres)", r"schimpfworter", r"parolacce",
    ), roles=(PROMPT,)),
    _t("swearing-uncensored", C.PROFANITY, 0.5, _words(
        r"uncensored", r"no (?:censor\w*|bleeps?|filter)", r"(?:don'?t|do not|without) (?:bleep|censor|hold)\w*",
        r"as many as (?:possible|you can)", r"nothing but", r"the (?:worst|filthiest|dirtiest|nastiest|foulest)",
        r"filthiest", r"rant", r"tirade", r"scream", r"string of", r"let (?:it )?loose", r"go off on",
        r"non-?stop", r"(?:a )?whole paragraph",
        r"every (?:swear|curse|cuss|dirty|filthy|bad|vulgar) ?words?", r"tons of", r"crudest", r"dirtiest",
        r"nastiest", r"the most (?:vulgar|crude|filthy|obscene|offensive)", r"call (?:my|him|her|them|someone)",
        r"diss track", r"tear(?:s|ing)? (?:\w+ ){0,3}a new one", r"make (?:him|her|them) cry", r"roast",
        r"scream\w*", r"unfiltered", r"every (?:f[- ]?bomb|c[- ]word|insult|dirty word|slur)",
        r"(?:i )?want (?:him|her|them) to cry", r"(?:mas|muy) vulgar", r"cuanto mas",
        r"profanity[_ ]filter\W*(?:=|is|:)?\W*off", r"piece of my mind",
    ), amp=True, roles=(PROMPT,)),
    # Swearing piled on a person: "as many swear words aimed at my manager as you can fit in".
    _t("swearing-at-person", C.PROFANITY, 0.5, _words(
        r"as many (?:\w+ ){1,8}?as (?:possible|you can)", r"aimed at", r"at my (?:manager|boss|ex|brother|sister|"
        r"coworker|landlord|teacher|neighbou?r|roommate)",
    ), amp=True, roles=(PROMPT,)),
    _t("profanity-mild", C.PROFANITY, 0.35, _words(r"damn\w*", r"crap\w*", r"hell", r"(?<!the )ass", r"arse", r"bloody",
                                                   r"sucks?")),
)

# Evidence no benign context can explain away ("write a python script ... where he
# dismembers her" is still gore).
_SERIOUS = frozenset(
    {"gore", "threat", "mass-attack", "get-away-with", "staged-accident", "make-disappear", "lynching"}
)

_CONTEXTS: tuple[Context, ...] = (
    Context("computing", frozenset({C.VIOLENCE, C.DANGEROUS}), 0.3, _re(_words(
        r"process(?:es)?", r"python", r"linux", r"bash", r"terminal", r"thread", r"server", r"docker", r"git",
        r"css", r"html", r"script", r"cron", r"node",
    )), _SERIOUS | {"malware"}),
    Context("games-sport", frozenset({C.VIOLENCE, C.DANGEROUS}), 0.3, _re(_words(
        r"minecraft", r"roblox", r"fortnite", r"counter strike", r"call of duty", r"elden ring", r"boss fight",
        r"final boss", r"volleyball", r"basketball", r"baseball", r"chess", r"in[- ]game", r"video games?",
        r"boxing", r"bjj", r"mma", r"heavy bag", r"clay pigeons", r"hitman(?: \d)?", r"assassin'?s creed",
        r"npcs?", r"side ?quests?", r"walkthrough", r"speedrun\w*", r"gta(?: \d| v)?", r"skyrim", r"dark souls",
        r"valorant", r"overwatch", r"apex legends", r"league of legends", r"d&d", r"dungeons (?:and|&) dragons",
    )), _SERIOUS),
    Context("fiction-review", frozenset({C.VIOLENCE}), 0.6, _re(_words(
        r"mystery", r"detective", r"novel", r"movie", r"film", r"scene explained", r"season \d", r"review",
    )), frozenset({"gore", "violence-graphic"})),
    Context("safety-advice", frozenset({C.DANGEROUS, C.VIOLENCE, C.SELF_HARM}), 0.35, _re(_words(
        r"safely", r"safety", r"safe", r"dispose", r"store", r"protect", r"prevent\w*", r"poisonous to",
        r"to avoid", r"dangerous to", r"detect", r"what is", r"what are", r"how does", r"how do .{0,30} work",
        r"affect", r"side effects", r"first aid", r"accidentally", r"stop the bleeding",
        r"without (?:cutting|burning|hurting|injuring|poisoning|harming) (?:myself|yourself|my fingers?|my (?:dog|cat|"
        r"pets?|kids?|children|plants)|the (?:dog|cat|pets?|kids?|children|plants))",
    )), frozenset({"evade-police", "firearm-mod", "threat", "get-away-with", "suicide-self", "defeat-safety"})),
    Context("history-education", frozenset({C.DANGEROUS, C.VIOLENCE, C.HATE, C.SELF_HARM}), 0.45, _re(_words(
        r"history", r"historical", r"causes? of", r"why did", r"why is", r"what happened", r"in the \d{4}s",
        r"world war", r"laws?", r"explained", r"statistics", r"rate", r"lesson plan", r"homework", r"psychology",
        r"difference between", r"how was", r"what were",
    )), frozenset({"kill-group", "slur", "threat", "suicide-self", "dehumanising", "jewish-control-libel",
                   "hate-intl", "exclude-group", "people-as-vermin", "coded-antisemitism", "groomer-smear"})),
    Context("help-prevention", frozenset({C.SELF_HARM, C.MINORS, C.SEXUAL, C.HATE}), 0.2, _re(_words(
        r"signs of", r"warning signs", r"prevention", r"hotline", r"crisis line", r"how to help", r"help (?:a|my)",
        r"what should i say", r"recovery", r"resources", r"risk", r"support\w*", r"report\w*", r"protect\w*",
        r"keep (?:my )?kids safe", r"talk to my (?:kids|child|son|daughter)", r"age[- ]appropriate",
        r"sex education", r"puberty", r"explain\w*", r"where babies come from", r"helplines?",
        r"who (?:can|could|should) i talk to", r"someone to talk to", r"talk to someone", r"get help",
        r"therapists?", r"counsell?ors?", r"counsell?ing",
    )), frozenset({"suicide-self", "exclude-group", "people-as-vermin", "groomer-smear", "coded-antisemitism"})),
    # Standing by someone or reporting someone: the harm is named because the person is against it.
    Context("bystander", frozenset({C.SELF_HARM, C.HATE, C.VIOLENCE}), 0.5, _re(_words(
        r"(?:support|help|comfort|reach out to) (?:her|him|them|my (?:friend|sister|brother|daughter|son|partner|"
        r"kid|child|mom|mum|dad|student|coworker|colleague))",
        r"what (?:can|should|do) i say", r"without making it worse",
        r"report(?:ing)? (?:a|my|the|this) (?:coworker|colleague|boss|manager|neighbou?r|classmate|student|teacher|"
        r"post|comment|account|user)",
        r"(?:email|letter|complaint|message) to (?:hr|human resources|the school|the principal|my manager)",
        r"how (?:do|can|should) (?:we|i) report (?:it|this|them|that)", r"get (?:it|them|this) taken down",
    )), _SERIOUS | {"suicide-self", "exclude-group", "people-as-vermin", "groomer-smear", "coded-antisemitism",
                    "slur", "kill-group", "group-should-die", "lasting-harm", "catch-alone", "draw-blood"}),
    # Idioms: "this burger is the bomb", "you killed it", "my stomach is killing me".
    Context("idiom", frozenset({C.VIOLENCE, C.DANGEROUS, C.SELF_HARM}), 0.3, _re(_words(
        r"(?:is|was|are|were|'s) (?:the|da) bomb", r"kill(?:ed|ing) it", r"(?:is|are|was) killing me",
        r"dying to (?:see|try|know|hear|meet|go)", r"to die for", r"slay(?:ed|ing)? (?:it|the)",
    )), _SERIOUS | {"suicide-self", "hide-harm", "lethal-dose", "toxin", "covert-dosing"}),
    # "Keep it PG, no gore": the request itself asks for less.
    Context("gore-declined", frozenset({C.VIOLENCE}), 0.3, _re(_words(
        r"no gore", r"without (?:any )?gore", r"keep it (?:pg|clean|family[- ]friendly|tame)", r"pg(?:-13)?",
        r"nothing graphic", r"not graphic", r"no blood", r"non-?graphic", r"not (?:too |very |overly )?gory",
        r"not gruesome",
    )), frozenset({"threat", "mass-attack", "get-away-with", "staged-accident", "make-disappear"})),
    # "A character considers suicide but chooses to live, written responsibly": safe-messaging fiction.
    Context("responsible-depiction", frozenset({C.SELF_HARM}), 0.4, _re(_words(
        r"responsibl[ey]", r"safe messaging", r"chooses? to live", r"decides? to live", r"won'?t harm readers",
        r"(?:reaches|reaching) out for help", r"hopeful ending",
    )), frozenset({"suicide-self", "lethal-dose", "hide-harm", "self-injury"})),
    # "The villain poisons someone, I don't need the method": the harm is a plot point, not a how-to.
    Context("method-declined", frozenset({C.DANGEROUS, C.VIOLENCE}), 0.35, _re(_words(
        r"(?:don'?t|do not|won'?t) need (?:the |any |a )?(?:method|recipe|details of how|how[- ]to|instructions)",
        r"without (?:the |any )?(?:method|recipe|instructions|how[- ]to)", r"no (?:real )?(?:method|recipe|"
        r"instructions)",
    )), _SERIOUS | {"drug-cooking", "covert-dosing", "defeat-safety"}),
    # "A breakup song with mild language like 'damn'": mild swearing is what is asked for.
    Context("mild-language", frozenset({C.PROFANITY, C.HATE}), 0.4, _re(_words(
        r"mild (?:language|swearing|cursing|profanity|words)", r"light (?:swearing|cursing)", r"(?:pg|pg-13)",
    )), frozenset({"profanity-strong", "swearing-asked"})),
    # "Evening gown, business suit, sfw": a clothed picture, said so.
    Context("clothed", frozenset({C.SEXUAL}), 0.5, _re(_words(
        r"sfw", r"fully clothed", r"business (?:suit|attire|casual)", r"evening gown", r"ball gown",
        r"(?:office|work) (?:attire|clothes|outfit)",
    )), frozenset({"porn", "hentai", "sex-act", "having-sex", "genitals", "nudity", "sexting", "sex-slang"})),
    # "A nude photo of a classmate is going round: how do we report it and get it taken down?" The person asks
    # how to stop abuse material, not for it (a request for material cancels it; the minors rule is its own).
    Context("report-abuse", frozenset({C.MINORS, C.SEXUAL}), 0.15, _re(_words(
        r"how (?:do|can|should) (?:we|i) report (?:it|this|them|that|the \w+)", r"get (?:it|them|this|the \w+) "
        r"(?:taken down|removed)", r"report (?:it|this|them) to (?:the )?(?:police|school|platform|site|website|"
        r"ncmec|iwf|cybertip\w*)",
    )), frozenset({"asks-for-material"})),
    # A list of moderation categories ("sexual content, graphic violence, self-harm, hate and harassment"):
    # a policy or a settings page names them, nobody asks for three at once this way.
    Context("category-list", frozenset({C.SEXUAL, C.VIOLENCE, C.SELF_HARM, C.HATE, C.DANGEROUS, C.PROFANITY}), 0.2,
            _re(rf"{_CATEGORY_NAME}(?:\s*(?:,|/|\band\b|\bor\b)\s*(?:and\s+|or\s+)?{_CATEGORY_NAME}){{2,}}"),
            _SERIOUS | {"suicide-self", "slur", "kill-group", "porn", "sex-act"}),
    # "A roast of my dad, no profanity": the request asks for none.
    Context("swearing-declined", frozenset({C.PROFANITY}), 0.3, _re(_words(
        r"no (?:profanity|swearing|cursing|cussing|swear ?words|curse ?words|bad words|f-bombs?)",
        r"without (?:any )?(?:profanity|swearing|cursing|cussing|swear ?words|bad words)",
        r"(?:keep it|make it|something) (?:clean|family[- ]friendly|pg)", r"family[- ]friendly",
    ))),
    Context("medical", frozenset({C.SEXUAL, C.SELF_HARM, C.DANGEROUS}), 0.4, _re(_words(
        r"cancer", r"screening", r"breastfeeding", r"medical", r"doctor", r"treatment", r"symptoms?", r"anatomy",
        r"dose", r"dosage", r"chemotherapy", r"pharmacy", r"prescription", r"normal", r"what happens",
        r"vitamins?", r"treatments?", r"creams?", r"dermatologists?", r"laser", r"condoms?", r"contracepti\w+",
        r"stis?", r"stds?", r"sex ed",
    ))),
    Context("art-study", frozenset({C.SEXUAL}), 0.5, _re(_words(
        r"figure (?:study|drawing)", r"art class", r"life drawing", r"statue", r"sculpture", r"renaissance",
        r"museum", r"classical", r"charcoal",
    ))),
    Context("language-study", frozenset({C.PROFANITY}), 0.5, _re(_words(
        r"etymology", r"origin of", r"where does .{0,30} come from", r"linguistics?", r"language class",
        r"translat\w*", r"in (?:spanish|french|german|italian|japanese|russian|portuguese|dutch|polish)",
    ))),
    Context("word-discussed", frozenset({C.PROFANITY, C.HATE}), 0.3, _re(
        r"(?:['\"‘“][^'\"‘’“”]{1,20}['\"’”]|\bthe word\b|\bn-word\b).{0,40}\b(?:mean\w*|word|swear\w*|slang|"
        r"stand for|offensive|considered|say)\b|\b(?:what does|is|says?|saying|the word)\b.{0,12}['\"‘“]"
        r"|\b(?:swear ?words?|profanity|curse words?|slurs?|insults?)\b.{0,30}['\"‘“_]"
    ), frozenset({"swearing-at-person"})),
)
# fmt: on

# Rules the MINORS check reports under.
_MINORS_RULE = "sexual-and-minor"


@dataclass(frozen=True)
class _Match:
    term: Term
    start: int
    end: int


def _category_score(weights: list[float]) -> float:
    """Return the noisy-OR of independent pieces of evidence: 1 - prod(1 - w)."""
    miss = 1.0
    for w in weights:
        miss *= 1.0 - w
    return 1.0 - miss


# Contexts that say what a whole text is about (a game, an idiom) also scale the meaning layer's
# finding, which reads "assassinate the target silently" the same in Hitman as in life. Not
# "computing": a paraphrased request for ransomware is the layer's to catch.
_DOMAIN_CONTEXTS = frozenset(
    {"games-sport", "idiom", "bystander", "responsible-depiction", "clothed", "mild-language", "report-abuse"}
)


def domain_factor(norm: NormalizedText, category: Category) -> float:
    """How much the domain contexts that match ``norm`` scale a finding in ``category`` (1.0: none match)."""
    factor = 1.0
    terms = {t.name: t for t in _TERMS}
    for ctx in _CONTEXTS:
        if ctx.name not in _DOMAIN_CONTEXTS or category not in ctx.categories or not ctx.pattern.search(norm.text):
            continue
        if not any(name in terms and terms[name].pattern.search(norm.text) for name in ctx.unless):
            factor *= ctx.factor
    return factor


def check_normalized(norm: NormalizedText, role: str = OUTPUT, *, min_score: float = 0.05) -> list[Finding]:
    """Return one Finding per category that the rules see in ``norm``, strongest rule first.

    Offsets in the findings are in the ORIGINAL text that ``norm`` came from.
    ``role`` is "prompt" (requests for instructions count) or "output". Raises
    ValueError for another role.
    """
    if role not in _BOTH:
        raise ValueError(f"role must be 'prompt' or 'output', not {role!r}")
    text = norm.text
    best: dict[str, _Match] = {}  # the first match of each term
    for term in _TERMS:
        if role not in term.roles:
            continue
        m = term.pattern.search(text)
        if m is not None and m.end() > m.start():
            best[term.name] = _Match(term, m.start(), m.end())

    by_cat: dict[Category, list[_Match]] = {}
    for match in best.values():
        by_cat.setdefault(match.term.category, []).append(match)

    findings: list[Finding] = []
    for cat, matches in by_cat.items():
        base = [m for m in matches if not m.term.amplifier]
        if not base:
            continue
        score = _category_score([m.term.weight for m in matches])
        for ctx in _CONTEXTS:
            if cat in ctx.categories and not (ctx.unless & best.keys()) and ctx.pattern.search(text):
                score *= ctx.factor
        if score < min_score:
            continue
        top = max(base, key=lambda m: m.term.weight)
        start, end = norm.span(top.start, top.end)
        findings.append(Finding(cat, round(score, 4), "rules", top.term.name, start, end))

    minors = _minors_finding(norm)
    if minors is not None:
        findings.append(minors)
    findings.sort(key=lambda f: f.score, reverse=True)
    return findings


_MINOR_RE = _re(_MINOR)
_SEXUALISH_RE = _re(_SEXUALISH)
# fmt: off
_CHILD_PORN_RE = _re(_words(r"child porn\w*", r"kiddie porn", r"cp links", r"csam", r"jailbait", r"loli hentai",
                            r"pedo\w*", r"paedo\w*"))
# fmt: on
_MINORS_SAFE = next(c for c in _CONTEXTS if c.name == "help-prevention").pattern
# A rule that forbids the category names it: "sexual content involving minors (always blocked)", terms of service.
_MINORS_FORBIDDEN = _re(
    r"\bsexual (?:content|material|abuse|exploitation|images?) (?:involving|of|depicting) (?:minors|children)\b"
    r".{0,40}\b(?:blocked|prohibited|forbidden|banned|illegal|not allowed|never allowed|zero tolerance|refused)\b"
    r"|\b(?:blocks?|prohibits?|forbids?|bans?|refuses?|never allows?) sexual (?:content|material|abuse|exploitation|"
    r"images?) (?:involving|of|depicting) (?:minors|children)\b"
)
_MINORS_REQUEST = _re(_words(r"write", r"generate", r"draw", r"describe", r"roleplay", r"role-play", r"create",
                             r"make me", r"give me", r"show me", r"send me", r"continue"))  # fmt: skip


def _minors_finding(norm: NormalizedText) -> Finding | None:
    """Return the MINORS finding (0.95) when sexual words and minor words meet, else None."""
    text = norm.text
    direct = _CHILD_PORN_RE.search(text)
    if direct is not None:
        start, end = norm.span(direct.start(), direct.end())
        return Finding(C.MINORS, 0.97, "rules", "child-sexual-abuse-term", start, end)
    minor = _MINOR_RE.search(text)
    if minor is None:
        return None
    sexual = _SEXUALISH_RE.search(text)
    if sexual is None:
        return None
    score = 0.95
    # Parents and teachers ask how to talk about sex with children, or protect them:
    # that is benign unless it also asks for sexual material.
    if _MINORS_SAFE.search(text) and not (_SEXUAL_STRONG.search(text) or _CREATE.search(text)):
        score = 0.05
    elif _MINORS_FORBIDDEN.search(text) and not (_SEXUAL_STRONG.search(text) or _MINORS_REQUEST.search(text)):
        score = 0.05
    lo = min(minor.start(), sexual.start())
    hi = max(minor.end(), sexual.end())
    start, end = norm.span(lo, hi)
    return Finding(C.MINORS, score, "rules", _MINORS_RULE, start, end)


def check(text: str, role: str = OUTPUT) -> list[Finding]:
    """Return the rules' findings for ``text`` (normalising it first); see :func:`check_normalized`."""
    return check_normalized(normalize(text), role)


def rule_names() -> list[str]:
    """Return the names of every rule and context, as they appear in Finding.rule."""
    return [t.name for t in _TERMS] + [_MINORS_RULE, "child-sexual-abuse-term", REAL_PERSON_RULE]


# --- a real, named person sexualised ------------------------------------------------------------
# No image classifier here can tell who is in a picture, so a request to sexualise a real person is
# refused at the prompt: sexual words and a real person (a full name, a public figure, someone the
# person knows, their photo) in one request.
REAL_PERSON_RULE = "real-person-sexualised"
_UNDRESSED_RE = _re(
    _SEXUALISH
    + "|"
    + _words(r"lingerie", r"underwear", r"without (?:any )?clothes", r"strip(?:ping|ped|s)?",
             r"bare (?:breasts?|chest|body)", r"in (?:the )?bed with", r"deepfake\w*", r"onlyfans")
)  # fmt: skip
_PUBLIC_FIGURE_RE = _re(
    _words(r"celebrit(?:y|ies)", r"actress(?:es)?", r"actors?", r"singers?", r"pop ?stars?", r"politicians?",
           r"influencers?", r"streamers?", r"youtubers?", r"tiktokers?", r"footballers?", r"athletes?",
           r"news ?anchors?", r"senators?", r"congress(?:wo)?man", r"prime minister", r"president", r"princess",
           r"queen", r"royals?", r"famous (?:person|woman|man|people)")
)  # fmt: skip
_KNOWN_PERSON_RE = _re(
    r"\b(?:my|our|his|her|their)\s+(?:\w+\s+)?(?:co-?workers?|colleagues?|neighbou?rs?|classmates?|ex|"
    r"ex-?(?:girlfriend|boyfriend|wife|husband)|boss|teacher|tutor|friend|roommate|crush|sister-in-law|"
    r"step-?(?:sister|mother|mom)|cousin|landlady|nurse|doctor|student)s?\b"
    r"|\b(?:from|using|with|based on)\s+(?:this|her|his|their|my|the attached|the)\s+(?:photos?|pictures?|"
    r"pics?|selfies?|instagram|facebook|profile)\b"
    r"|\b(?:her|his) (?:instagram|facebook|profile|selfies?)\b"
    r"|\b(?:woman|man|girl|guy|person|lady|people|couple) in (?:this|the|my|these|attached) (?:photos?|pictures?|"
    r"pics?|images?)\b|\b(?:this|these) (?:photos?|pictures?|pics?|selfies?) of\b"
)
# A picture of someone undressed: with a full name, only this counts (a story's characters have names too).
_PICTURED_RE = _re(
    _words(r"photos?", r"pictures?", r"pics?", r"images?", r"renders?", r"deepfakes?\w*", r"nudes?", r"naked",
           r"undress\w*", r"topless", r"strip(?:ping|ped)?", r"lingerie", r"onlyfans")
)  # fmt: skip
_ART_CONTEXT_RE = _re(
    _words(r"statues?", r"sculptures?", r"paintings?", r"museums?", r"renaissance", r"classical", r"frescos?",
           r"art history", r"marble", r"venus", r"michelangelo\w*", r"botticelli", r"goya", r"manet", r"rodin")
)  # fmt: skip
# Capitalised words that start a request or name a thing, not a person.
_NOT_NAMES = frozenset(
    "a an the i please write make draw generate create show give me my can could would you picture photo image "
    "pic render paint describe tell story imagine nude naked sexy hot topless erotic nsfw hd 4k 8k ultra realistic "
    "photorealistic portrait of in on at with and or her his she he they it this that new old young big little "
    "lady mr mrs ms miss dr sir god christmas halloween monday tuesday wednesday thursday friday saturday sunday "
    "january february march april may june july august september october november december".split()
)
_CAPITALISED_RUN = re.compile(r"(?:\b[A-Z][a-z'’]+(?:-[A-Z][a-z]+)?\b[ \t]+)+\b[A-Z][a-z'’]+\b")


def _names_a_person(original: str) -> bool:
    """Whether ``original`` holds a person's full name: two capitalised words that are not a request's words."""
    for run in _CAPITALISED_RUN.finditer(original):
        words = [w.strip("'’").removesuffix("'s").removesuffix("’s") for w in run.group(0).split()]
        names = [w for w in words if w.lower() not in _NOT_NAMES]
        if len(names) >= 2:
            return True
    return False


def real_person_finding(original: str, norm: NormalizedText | None = None) -> Finding | None:
    """Return a SEXUAL finding (0.9) when a request sexualises a real person, else None (prompts only).

    A real person: a full name ("Emma Stone"), a public figure ("a famous actress"), someone the
    person knows ("my coworker", "from her photo"). Art history ("Michelangelo's David nude
    statue") is not a person.
    """
    norm = norm or normalize(original)
    sexual = _UNDRESSED_RE.search(norm.text)
    if sexual is None:
        return None
    known = _KNOWN_PERSON_RE.search(norm.text) is not None
    if not known and _ART_CONTEXT_RE.search(norm.text):
        return None
    named = _PICTURED_RE.search(norm.text) is not None and _names_a_person(original)
    if not (known or named or _PUBLIC_FIGURE_RE.search(norm.text)):
        return None
    start, end = norm.span(sexual.start(), sexual.end())
    return Finding(C.SEXUAL, 0.9, "rules", REAL_PERSON_RULE, start, end)
