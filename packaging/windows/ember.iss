; Inno Setup script of Ember for Windows (x64): installs the PyInstaller one-folder build.
;
;   pyinstaller --noconfirm --distpath build\dist --workpath build\work packaging\ember.spec
;   python packaging\models_tree.py build\dist\ember\models
;   iscc /DVersion=0.1.0 /DVariant=cpu packaging\windows\ember.iss
;
; Out: build\windows\Ember-<version>-<variant>-setup.exe. A one-folder build inside a real installer,
; not a one-file exe (those unpack themselves at every start and are flagged by antivirus scanners,
; LostRuins/koboldcpp#779). Per-user install by default (no administrator rights needed).
;
; Signing (parameterised, see README "Installers"): define SignTool in Inno Setup (Tools > Configure
; Sign Tools) as, for example,
;   signtool sign /fd SHA256 /tr http://timestamp.digicert.com /td SHA256 /f "%EMBER_SIGN_PFX%" /p "%EMBER_SIGN_PASSWORD%" $f
; and build with iscc /DSign=1 ...; the executables and the uninstaller are signed too.
; This script has not been run here: there is no Windows machine (README says so).

#ifndef Version
  #define Version "0.1.0"
#endif
#ifndef Variant
  #define Variant "cpu"
#endif

[Setup]
AppId={{8E3C1B7A-51D4-4F0E-9A57-3E6B2C0D7E11}
AppName=Ember
AppVersion={#Version}
AppVerName=Ember {#Version} ({#Variant})
AppPublisher=Ember's developers
DefaultDirName={autopf}\Ember
DefaultGroupName=Ember
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\build\windows
OutputBaseFilename=Ember-{#Version}-{#Variant}-setup
SetupIconFile=..\..\resources\icons\ember.ico
UninstallDisplayIcon={app}\ember.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
LicenseFile=..\..\resources\licenses\README.md
#ifdef Sign
SignTool=signtool
SignedUninstaller=yes
#endif

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "portable"; Description: "Keep Ember's data beside the program (portable mode, for a USB stick)"; Flags: unchecked

[Components]
Name: "app"; Description: "Ember"; Types: full compact custom; Flags: fixed
Name: "models"; Description: "Embedded models (chat, voices, dictation, safety; about 600 MB)"; Types: full

[Files]
Source: "..\..\build\dist\ember\*"; Excludes: "models\*"; DestDir: "{app}"; Components: app; Flags: recursesubdirs ignoreversion
Source: "..\..\build\dist\ember\models\*"; DestDir: "{app}\models"; Components: models; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\Ember"; Filename: "{app}\ember.exe"
Name: "{group}\Uninstall Ember"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Ember"; Filename: "{app}\ember.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\ember.exe"; Description: "{cm:LaunchProgram,Ember}"; Flags: nowait postinstall skipifsilent

[Code]
procedure CurStepChanged(CurStep: TSetupStep);
begin
  if (CurStep = ssPostInstall) and WizardIsTaskSelected('portable') then
    SaveStringToFile(ExpandConstant('{app}\portable'), '', False);
end;

[UninstallDelete]
Type: files; Name: "{app}\portable"
