"""Name, ethnicity and place reference data for the synthetic demo population.

Lists are ordered most-common first; callers weight by rank. The British pools come
from Faker's en_GB provider (ONS-derived); the rest are short hand-picked lists so that
names correlate with ethnicity, which matters for linkage: common names such as
"Muhammad Khan" or "Olivia Smith" cluster and create realistic false-match pressure.
"""

from __future__ import annotations

from faker.providers.person.en_GB import Provider as _EnGbPerson

# Faker's en_GB first names reflect adults born before ~1990; children need modern names.
BRITISH_OLDER_MALE: tuple[str, ...] = tuple(_EnGbPerson.first_names_male)
BRITISH_OLDER_FEMALE: tuple[str, ...] = tuple(_EnGbPerson.first_names_female)
BRITISH_SURNAMES: tuple[str, ...] = tuple(_EnGbPerson.last_names.keys())
BRITISH_SURNAME_WEIGHTS: tuple[float, ...] = tuple(_EnGbPerson.last_names.values())

BRITISH_MODERN_MALE = (
    "Oliver", "Jack", "Harry", "George", "Noah", "Charlie", "Jacob", "Alfie", "Freddie",
    "Oscar", "Leo", "Arthur", "Thomas", "William", "James", "Henry", "Joshua", "Archie",
    "Theo", "Ethan", "Isaac", "Samuel", "Joseph", "Daniel", "Max", "Lucas", "Logan",
    "Alexander", "Riley", "Finley", "Benjamin", "Edward", "Mason", "Dylan", "Harrison",
    "Tyler", "Jake", "Lewis", "Callum", "Ryan", "Matthew", "Nathan", "Reuben", "Toby",
)  # fmt: skip
BRITISH_MODERN_FEMALE = (
    "Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophia", "Grace", "Mia", "Poppy", "Ella",
    "Lily", "Evie", "Isabella", "Sophie", "Ivy", "Freya", "Harper", "Willow", "Charlotte",
    "Jessica", "Daisy", "Florence", "Millie", "Phoebe", "Isabelle", "Ruby", "Chloe",
    "Holly", "Lucy", "Elizabeth", "Katherine", "Eleanor", "Megan", "Hannah", "Lauren",
    "Abigail", "Emma", "Amy", "Rebecca", "Evelyn", "Victoria", "Alexandra", "Natalie",
)  # fmt: skip


# group -> (male given names, female given names, surnames)
OTHER_POOLS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "south_asian_muslim": (
        ("Muhammad", "Mohammed", "Ibrahim", "Yusuf", "Ayaan", "Zain", "Hamza", "Ali",
         "Omar", "Adam", "Bilal", "Mohammad", "Imran", "Tariq", "Rayyan", "Abdul"),
        ("Aisha", "Fatima", "Maryam", "Zara", "Hafsa", "Amina", "Inaya", "Zainab", "Hania",
         "Noor", "Sana", "Ayesha", "Nadia", "Samina", "Shazia", "Rukhsana"),
        ("Khan", "Hussain", "Ahmed", "Ali", "Akhtar", "Shah", "Iqbal", "Rahman", "Mahmood",
         "Islam", "Begum", "Uddin", "Miah", "Malik", "Butt", "Chaudhry", "Aslam", "Bibi"),
    ),
    "indian": (
        ("Arjun", "Aarav", "Rohan", "Dev", "Vihaan", "Krish", "Aryan", "Ravi", "Sanjay",
         "Amit", "Rajesh", "Gurpreet", "Harjit", "Vikram"),
        ("Priya", "Anaya", "Diya", "Saanvi", "Riya", "Anika", "Kavya", "Meera", "Asha",
         "Sunita", "Neha", "Pooja", "Simran", "Harleen"),
        ("Patel", "Singh", "Kaur", "Sharma", "Kumar", "Gill", "Sandhu", "Mistry", "Shah",
         "Parmar", "Chauhan", "Sidhu", "Bains", "Joshi", "Mehta"),
    ),
    "chinese": (
        ("Wei", "Jun", "Hao", "Ming", "Jian", "Kai", "Yi", "Chen", "Tao"),
        ("Mei", "Jia", "Lin", "Xin", "Yan", "Hui", "Ying", "Li", "Xiu"),
        ("Wang", "Li", "Zhang", "Chen", "Liu", "Wong", "Chan", "Lee", "Lam", "Cheung", "Ng"),
    ),
    "black_african": (
        ("Emmanuel", "Samuel", "David", "Daniel", "Joshua", "Tobi", "Chidi", "Kwame",
         "Kofi", "Oluwaseun", "Ayo", "Abdi", "Mohamed", "Tunde"),
        ("Blessing", "Grace", "Precious", "Favour", "Esther", "Adaeze", "Chioma", "Ama",
         "Abena", "Folake", "Hodan", "Amina", "Ruth", "Deborah"),
        ("Okafor", "Adeyemi", "Mensah", "Okoye", "Osei", "Boateng", "Abdi", "Hassan",
         "Mohamed", "Adebayo", "Okonkwo", "Asante", "Owusu", "Nwosu", "Eze", "Farah"),
    ),
    "arab": (
        ("Omar", "Yusuf", "Adam", "Khalid", "Ahmed", "Hassan", "Karim", "Sami"),
        ("Layla", "Noor", "Mariam", "Yasmin", "Huda", "Rania", "Leila", "Salma"),
        ("Hassan", "Ali", "Ahmed", "Ibrahim", "Saleh", "Mansour", "Haddad", "Nasser",
         "Khalil"),
    ),
    # Diacritics are deliberate: systems that fold to ASCII produce linkage mismatches.
    "eastern_european": (
        ("Jakub", "Kacper", "Szymon", "Filip", "Mateusz", "Andrei", "Bogdan", "Tomasz",
         "Łukasz", "Piotr"),
        ("Zuzanna", "Julia", "Maja", "Oliwia", "Alicja", "Ioana", "Elena", "Agnieszka",
         "Małgorzata", "Katarzyna"),
        ("Kowalski", "Nowak", "Wiśniewski", "Wójcik", "Kowalczyk", "Lewandowski",
         "Popescu", "Ionescu", "Kamiński", "Zieliński", "Szymański", "Dąbrowski"),
    ),
}  # fmt: skip

# ONS Census 2021 ethnic group (19 categories, England and Wales), with approximate
# population shares and the name pool each draws from.
ETHNICITIES: tuple[tuple[str, float, str], ...] = (
    ("White British", 74.4, "british"),
    ("White Irish", 0.9, "british"),
    ("White Gypsy or Irish Traveller", 0.1, "british"),
    ("White Roma", 0.2, "eastern_european"),
    ("Any other White background", 6.2, "eastern_european"),
    ("Mixed - White and Black Caribbean", 0.9, "british"),
    ("Mixed - White and Black African", 0.4, "british"),
    ("Mixed - White and Asian", 0.8, "british"),
    ("Mixed - Any other Mixed background", 0.8, "british"),
    ("Asian or Asian British - Indian", 3.1, "indian"),
    ("Asian or Asian British - Pakistani", 2.7, "south_asian_muslim"),
    ("Asian or Asian British - Bangladeshi", 1.1, "south_asian_muslim"),
    ("Asian or Asian British - Chinese", 0.7, "chinese"),
    ("Asian or Asian British - Any other Asian background", 1.6, "south_asian_muslim"),
    ("Black or Black British - African", 2.5, "black_african"),
    ("Black or Black British - Caribbean", 1.0, "british"),
    ("Black or Black British - Any other Black background", 0.5, "british"),
    ("Other ethnic group - Arab", 0.6, "arab"),
    ("Other ethnic group - Any other ethnic group", 1.6, "british"),
)

# Given name -> informal forms people give, or alternative transliterations.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "William": ("Bill", "Will", "Billy"), "Elizabeth": ("Liz", "Beth", "Lizzie"),
    "Katherine": ("Kate", "Katie", "Kath"), "Catherine": ("Cath", "Kate", "Cathy"),
    "Robert": ("Rob", "Bob", "Robbie"), "Richard": ("Rich", "Richie"),
    "James": ("Jim", "Jamie"), "Michael": ("Mike", "Mick"), "Thomas": ("Tom", "Tommy"),
    "Christopher": ("Chris",), "Daniel": ("Dan", "Danny"), "Matthew": ("Matt",),
    "Andrew": ("Andy", "Drew"), "Anthony": ("Tony", "Ant"), "Joseph": ("Joe", "Joey"),
    "Samuel": ("Sam", "Sammy"), "Benjamin": ("Ben", "Benji"), "Alexander": ("Alex", "Xander"),
    "Edward": ("Ed", "Eddie", "Ted"), "Jonathan": ("Jon", "Jonny"), "Nicholas": ("Nick",),
    "Stephen": ("Steve",), "Steven": ("Steve",), "Peter": ("Pete",), "David": ("Dave",),
    "Joshua": ("Josh",), "Jacob": ("Jake",), "Oliver": ("Ollie", "Olly"),
    "Charles": ("Charlie", "Chas"), "Henry": ("Harry", "Hal"), "Frederick": ("Fred",),
    "Timothy": ("Tim",), "Philip": ("Phil",), "Kenneth": ("Ken",), "Nathan": ("Nate",),
    "Margaret": ("Maggie", "Peggy", "Meg"), "Rebecca": ("Becky", "Becca"),
    "Jessica": ("Jess",), "Victoria": ("Vicky", "Tori"), "Jennifer": ("Jen", "Jenny"),
    "Deborah": ("Debbie", "Deb"), "Susan": ("Sue", "Susie"), "Samantha": ("Sam",),
    "Charlotte": ("Lottie", "Charlie"), "Abigail": ("Abi", "Abby"), "Olivia": ("Liv",),
    "Isabella": ("Bella", "Izzy"), "Isabelle": ("Izzy",), "Amelia": ("Millie", "Amy"),
    "Eleanor": ("Ellie", "Nell"), "Sophia": ("Sophie",), "Natalie": ("Nat",),
    "Patricia": ("Pat", "Trish"), "Jacqueline": ("Jackie",), "Nicola": ("Nicky",),
    "Alexandra": ("Alex", "Lexi"), "Florence": ("Flo",), "Evelyn": ("Evie",),
    "Christine": ("Chris",), "Pamela": ("Pam",), "Kathleen": ("Kath",),
    "Muhammad": ("Mohammed", "Mohammad"), "Mohammed": ("Muhammad", "Mohamed"),
    "Mohammad": ("Muhammad",), "Aisha": ("Ayesha",), "Yusuf": ("Yousef",),
    "Oluwaseun": ("Seun",), "Małgorzata": ("Gosia",), "Katarzyna": ("Kasia",),
}  # fmt: skip

# Postcode areas by region, with sampling weight and the highest district number used.
POSTCODE_AREAS: dict[str, tuple[tuple[str, float, int], ...]] = {
    "North East": (("NE", 0.45, 66), ("SR", 0.15, 8), ("DH", 0.15, 9), ("TS", 0.15, 29),
                   ("DL", 0.10, 17)),
    "Yorkshire and The Humber": (("LS", 0.30, 29), ("BD", 0.20, 24), ("YO", 0.20, 62),
                                 ("HU", 0.15, 20), ("HG", 0.05, 5), ("DN", 0.10, 41)),
    "North West": (("CA", 0.60, 28), ("LA", 0.40, 23)),
}  # fmt: skip

# Most residents live in Northshire (North East); the rest travel in from neighbours.
REGION_WEIGHTS: dict[str, float] = {
    "North East": 0.85,
    "Yorkshire and The Humber": 0.11,
    "North West": 0.04,
}

# Inward-code unit letters exclude C, I, K, M, O and V in real UK postcodes.
POSTCODE_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"

# GP practice code prefix (letter + "8") by region, mirroring real code families.
GP_PREFIX: dict[str, str] = {
    "North East": "A8",
    "Yorkshire and The Humber": "B8",
    "North West": "P8",
}

# Three-digit local authority numbers used inside UPNs, by the region that issued them.
UPN_LA_CODE: dict[str, str] = {
    "North East": "929",
    "Yorkshire and The Humber": "383",
    "North West": "909",
}

# Fictional Northshire electoral wards; codes sit in an unused part of the E05 range.
WARD_NAMES: tuple[str, ...] = (
    "Abbeyfield", "Brackenside", "Castle Moor", "Dunmere", "Eastgate", "Fellside",
    "Greystone", "Harbourside", "Ironmoor", "Kirkby Vale", "Longwater", "Millfield",
    "Northgate", "Oakwood", "Priory", "Quarry Hill", "Riverside", "Saltmarsh",
    "Thornbury", "Westfield",
)  # fmt: skip
